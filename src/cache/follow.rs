//! What a fill publishes and how each client follows it: a `watch`
//! channel carries the fill's state (waiting, streaming into a file,
//! complete, in memory, failed) and a `FillReader` turns it into body
//! blocks for one client, from the mapping when there is one.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::entry::Meta;
use super::load::read_at;
use crate::error::AppError;
use crate::extract::Package;

/// Largest slice of a mapped fill a client takes at once.
const MAP_READ: usize = 1024 * 1024;
/// Largest read a client does at once from a growing or complete file.
pub const READ_BLOCK: usize = 256 * 1024;

/// Where a fill is.
#[derive(Debug, Clone)]
pub enum FillState {
    /// Waiting for the upstream's response headers.
    Waiting,
    /// Body arriving: `written` bytes of it are in `file` at `offset`.
    Streaming {
        file: Arc<File>,
        meta: Arc<Meta>,
        offset: u64,
        expected: Option<u64>,
        written: u64,
        /// The body region mapped (when the length was known up front):
        /// readers slice it instead of reading the file.
        map: Option<Bytes>,
    },
    /// The whole body is in `file`; `len` is final.
    Complete {
        file: Arc<File>,
        meta: Arc<Meta>,
        offset: u64,
        len: u64,
        map: Option<Bytes>,
    },
    /// A small body, complete and in memory (it was never streamed via a file).
    Memory {
        meta: Arc<Meta>,
        body: Bytes,
    },
    Failed(AppError),
}

/// A fill in flight; cheap to share.
#[derive(Debug)]
pub struct Fill {
    pub(super) state: watch::Receiver<FillState>,
}

impl Fill {
    /// A reader positioned at the start of the body.
    pub fn reader(&self) -> FillReader {
        FillReader {
            rx: self.state.clone(),
            pos: 0,
        }
    }
}

/// One client's view of a fill.
pub struct FillReader {
    rx: watch::Receiver<FillState>,
    pos: u64,
}

impl FillReader {
    /// Waits for the response headers: the meta and, when known, the length.
    pub async fn head(&mut self) -> Result<(Arc<Meta>, Option<u64>), AppError> {
        loop {
            match &*self.rx.borrow_and_update() {
                FillState::Waiting => {}
                FillState::Streaming { meta, expected, .. } => {
                    return Ok((meta.clone(), *expected))
                }
                FillState::Complete { meta, len, .. } => return Ok((meta.clone(), Some(*len))),
                FillState::Memory { meta, body } => {
                    return Ok((meta.clone(), Some(body.len() as u64)))
                }
                FillState::Failed(e) => return Err(e.clone()),
            }
            self.changed().await?;
        }
    }

    /// The whole body, when the fill holds it in memory and nothing has been
    /// read yet (a small fill): it can then be answered as one block.
    pub fn memory_body(&self) -> Option<Bytes> {
        match &*self.rx.borrow() {
            FillState::Memory { body, .. } if self.pos == 0 => Some(body.clone()),
            _ => None,
        }
    }

    /// The next block of body, `None` at the end. An error means the body is
    /// incomplete and the client's response must be aborted.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, AppError> {
        loop {
            let (file, start, available, done, map) = match &*self.rx.borrow_and_update() {
                FillState::Waiting => (None, 0, 0, false, None),
                FillState::Streaming {
                    file,
                    offset,
                    written,
                    map,
                    ..
                } => (Some(file.clone()), *offset, *written, false, map.clone()),
                FillState::Complete {
                    file,
                    offset,
                    len,
                    map,
                    ..
                } => (Some(file.clone()), *offset, *len, true, map.clone()),
                FillState::Memory { body, .. } => {
                    let start = usize::try_from(self.pos)
                        .unwrap_or(body.len())
                        .min(body.len());
                    self.pos = body.len() as u64;
                    return Ok((start < body.len()).then(|| body.slice(start..)));
                }
                FillState::Failed(e) => return Err(e.clone()),
            };
            if let (Some(map), true) = (&map, self.pos < available) {
                let from = usize::try_from(self.pos).unwrap_or(usize::MAX);
                let to = usize::try_from(available.min(self.pos + MAP_READ as u64))
                    .unwrap_or(usize::MAX)
                    .min(map.len());
                if from >= to {
                    return Err(AppError::BadUpstream(
                        "mapping shorter than recorded".into(),
                    ));
                }
                self.pos = to as u64;
                return Ok(Some(map.slice(from..to)));
            }
            if let Some(file) = file {
                if self.pos < available {
                    let n = usize::try_from(available - self.pos)
                        .unwrap_or(READ_BLOCK)
                        .min(READ_BLOCK);
                    let chunk = read_at(file, start + self.pos, n).await?;
                    if chunk.is_empty() {
                        return Err(AppError::BadUpstream(
                            "cache file shorter than recorded".into(),
                        ));
                    }
                    self.pos += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                if done {
                    return Ok(None);
                }
            }
            self.changed().await?;
        }
    }

    /// Waits for the whole body: the file, the body's offset and length in it.
    pub async fn complete(&mut self) -> Result<(Package, Arc<Meta>), AppError> {
        loop {
            match &*self.rx.borrow_and_update() {
                FillState::Complete {
                    file,
                    meta,
                    offset,
                    len,
                    ..
                } => {
                    let pkg = Package::File {
                        file: file.clone(),
                        offset: *offset,
                        len: *len,
                    };
                    return Ok((pkg, meta.clone()));
                }
                FillState::Memory { meta, body } => {
                    return Ok((Package::Bytes(body.clone()), meta.clone()))
                }
                FillState::Failed(e) => return Err(e.clone()),
                _ => {}
            }
            self.changed().await?;
        }
    }

    async fn changed(&mut self) -> Result<(), AppError> {
        self.rx
            .changed()
            .await
            .map_err(|_| AppError::BadUpstream("fill ended without a result".into()))
    }
}
