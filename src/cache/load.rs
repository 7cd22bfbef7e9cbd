//! Reading an entry back from disk: open, parse the header, map the body,
//! and check the seal when the entry may have been torn by a power cut
//! (`durable.rs`); a damaged entry is removed, never served.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use super::durable::Durability;
use super::entry::{read_header, Meta};
use super::CacheError;

/// Files up to this size are served from a mapping; larger ones are read in
/// blocks. A mapping is faster, but Linux counts every touched page of every
/// mapping in the process's RSS, and entries this large do not fit the open-
/// entry cache, so each request would map them anew.
pub(crate) const MAP_MAX: u64 = 64 * 1024 * 1024;

/// Maps `file` read-only and returns the body part; `None` if mapping fails
/// or the file is too large to map (callers then read with `read_at`).
fn map_body(file: &File, offset: u64, size: u64) -> Option<Bytes> {
    if size > MAP_MAX {
        return None;
    }
    let start = usize::try_from(offset).ok()?;
    Some(map_file(file, size)?.slice(start..))
}

/// Maps the first `size` bytes of `file` read-only.
pub(crate) fn map_file(file: &File, size: u64) -> Option<Bytes> {
    let len = usize::try_from(size).ok()?;
    // SAFETY: cache files are only ever appended to under a temp name (by the
    // one fill that owns them, within the size they were given), then
    // renamed into place, or written whole under their own name before the
    // index books them (`DiskTier::create_new`: no reader opens them
    // before); they are never truncated or rewritten afterwards
    // (replacement is by rename, removal by unlink, both of which keep this
    // inode and its pages intact for existing mappings).
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file) }.ok()?;
    Some(Bytes::from_owner(map))
}

/// Opens and checks one entry file (blocking). A file whose header or seal
/// does not hold is removed.
pub(super) fn load(path: &Path, durable: &Durability) -> Result<Option<DiskEntry>, CacheError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let stat = file.metadata().map_err(|e| io_err(path, e))?;
    let size = stat.len();
    let why = match read_header(&file, size).map_err(|e| io_err(path, e))? {
        Ok((meta, _, offset, seal)) => {
            let map = map_body(&file, offset, size);
            let entry = DiskEntry {
                file: Arc::new(file),
                meta: Arc::new(meta),
                offset,
                len: size - offset,
                map,
            };
            match seal {
                Some(s) if s.len != entry.len => "length differs from its seal",
                Some(s) if durable.suspect(stat.modified().unwrap_or(UNIX_EPOCH)) => {
                    if crc_of(&entry)? == s.crc {
                        return Ok(Some(entry));
                    }
                    "checksum differs from its seal"
                }
                _ => return Ok(Some(entry)),
            }
        }
        Err(_) => "unreadable header",
    };
    tracing::warn!(path = %path.display(), why, "removing damaged cache entry");
    remove_if_same(path, &stat);
    Ok(None)
}

/// Removes `path` if it still names the file `opened` describes. A check
/// can take long (a CRC over a large suspect entry), and meanwhile a fill
/// may have published a good entry under the same name by rename; that
/// one must stay.
fn remove_if_same(path: &Path, opened: &fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let same = fs::metadata(path).is_ok_and(|m| m.dev() == opened.dev() && m.ino() == opened.ino());
    if same {
        let _ = fs::remove_file(path);
    }
}

/// CRC-32 of an entry's body (blocking).
fn crc_of(e: &DiskEntry) -> Result<u32, CacheError> {
    if let Some(m) = &e.map {
        return Ok(crc32fast::hash(m));
    }
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < e.len {
        let n = usize::try_from(e.len - pos)
            .unwrap_or(buf.len())
            .min(buf.len());
        e.file
            .read_exact_at(&mut buf[..n], e.offset + pos)
            .map_err(|err| io_err(Path::new("entry"), err))?;
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finalize())
}

/// An entry found on disk: an open file and where its body lies.
#[derive(Debug, Clone)]
pub struct DiskEntry {
    pub file: Arc<File>,
    pub meta: Arc<Meta>,
    /// Byte offset of the body in `file`.
    pub offset: u64,
    /// Body length.
    pub len: u64,
    /// The body as a slice of a read-only mapping of the file, when mapping
    /// worked; responders send slices of it without copying or blocking.
    pub map: Option<Bytes>,
}

impl DiskEntry {
    /// The whole body in memory: the mapping when there is one, else read.
    pub async fn body(&self) -> Result<Bytes, CacheError> {
        match &self.map {
            Some(m) => Ok(m.clone()),
            None => {
                let len = usize::try_from(self.len).unwrap_or(usize::MAX);
                read_at(self.file.clone(), self.offset, len).await
            }
        }
    }
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// Runs blocking file work off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CacheError::Io {
            path: "blocking task".into(),
            msg: e.to_string(),
        })?
}

/// Reads `len` bytes at `offset` (short only at end of file).
pub async fn read_at(file: Arc<File>, offset: u64, len: usize) -> Result<Bytes, CacheError> {
    blocking(move || {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = file
                .read_at(&mut buf[got..], offset + got as u64)
                .map_err(|e| io_err(Path::new("entry"), e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(Bytes::from(buf))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_removed_but_not_its_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        // (replaced by rename after it was opened, still there afterwards)
        for (replaced, kept) in [(false, false), (true, true)] {
            fs::write(&path, b"damaged").unwrap();
            let opened = File::open(&path).unwrap().metadata().unwrap();
            if replaced {
                let fresh = dir.path().join("fresh");
                fs::write(&fresh, b"a good entry").unwrap();
                fs::rename(&fresh, &path).unwrap();
            }
            remove_if_same(&path, &opened);
            assert_eq!(path.exists(), kept, "replaced: {replaced}");
        }
    }
}
