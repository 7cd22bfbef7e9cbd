//! Single files out of cached packages: random access through the zip's
//! central directory (parsed once per package and kept, `directory.rs`),
//! streamed in blocks, under limits a hostile package cannot get around.

mod content;
mod directory;
mod eocd;
mod path;

pub use content::{content_archive, ContentFormat, MAX_IN_MEMORY};
pub use directory::{DirKey, Directories};
pub use path::{entry_path, MAX_PATH};

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

/// Size of the blocks an entry is streamed in.
const BLOCK: usize = 64 * 1024;

/// Why a file cannot be served out of a package.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExtractError {
    /// No such file in the package (or it is a directory).
    #[error("no such file in the package")]
    NotFound,
    /// The package is not a readable zip, or an entry fails its checks.
    #[error("corrupt package: {0}")]
    Corrupt(String),
    /// The package exceeds an extraction limit.
    #[error("package exceeds extraction limits: {0}")]
    Limit(String),
}

/// Extraction limits (from `[extract]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_ratio: u64,
    pub max_entries: u64,
}

impl From<&crate::config::ExtractConfig> for Limits {
    fn from(c: &crate::config::ExtractConfig) -> Self {
        Limits {
            max_file_size: c.max_file_size.as_u64(),
            max_ratio: c.max_ratio,
            max_entries: c.max_entries,
        }
    }
}

/// A complete package body: a region of a cache file, or bytes in memory.
#[derive(Clone)]
pub enum Package {
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
    Bytes(Bytes),
}

impl Package {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Package::File { len, .. } => *len,
            Package::Bytes(b) => b.len() as u64,
        }
    }

    /// Reads at `pos` of the body (short only at its end); a file is read
    /// by position, so the cache's shared handle is never moved.
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len().saturating_sub(pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        match self {
            Package::File { file, offset, .. } => file.read_at(&mut buf[..n], offset + pos),
            Package::Bytes(b) => {
                // `pos < len` here, and `len` is the slice's length.
                let from = usize::try_from(pos).unwrap_or(usize::MAX);
                let src = b
                    .get(from..from.saturating_add(n))
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                buf[..n].copy_from_slice(src);
                Ok(n)
            }
        }
    }

    fn read_exact_at(&self, mut pos: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(pos, buf)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    pos += n as u64;
                    buf = &mut buf[n..];
                }
            }
        }
        Ok(())
    }
}

/// The check a package passes before it is cached: its entry count within
/// `extract.max_entries` (read from the end records, before anything is
/// built per entry) and its central directory readable. `Copy`, so a fill
/// carries it by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageCheck {
    pub max_entries: u64,
}

impl Default for PackageCheck {
    fn default() -> Self {
        PackageCheck {
            max_entries: crate::config::ExtractConfig::default().max_entries,
        }
    }
}

impl PackageCheck {
    /// Runs the check; blocks, so run it off the async workers.
    pub fn run(&self, pkg: Package) -> Result<(), ExtractError> {
        directory::Directory::open(pkg, self.max_entries).map(|_| ())
    }
}

/// An entry being streamed: its uncompressed size and its blocks. An `Err`
/// block means the entry turned out bad mid-way; the response must be cut.
pub struct Extracted {
    pub size: u64,
    pub body: mpsc::Receiver<Result<Bytes, ExtractError>>,
}

/// Opens `path` in `pkg` and streams it from a blocking thread, so the async
/// workers never inflate data. The package's directory comes from `dirs`
/// (parsed now if it is not kept under `key`). Checks happen before the
/// first byte is sent.
pub async fn extract(
    pkg: Package,
    path: String,
    limits: Limits,
    dirs: Directories,
    key: DirKey,
) -> Result<Extracted, ExtractError> {
    let (head_tx, head_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let dir = match dirs.get(key, &pkg, limits.max_entries) {
            Ok(d) => d,
            Err(e) => {
                let _ = head_tx.send(Err(e));
                return;
            }
        };
        // The lease lends `pkg` to the kept directory until the entry is sent.
        let mut lease = dir.lend(pkg);
        run(&mut lease.archive, &path, limits, head_tx, tx);
    });
    let size = head_rx
        .await
        .map_err(|_| ExtractError::Corrupt("extraction stopped".into()))??;
    Ok(Extracted { size, body: rx })
}

fn run<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &str,
    limits: Limits,
    head: oneshot::Sender<Result<u64, ExtractError>>,
    tx: mpsc::Sender<Result<Bytes, ExtractError>>,
) {
    let Some(index) = zip.index_for_name(path) else {
        let _ = head.send(Err(ExtractError::NotFound));
        return;
    };
    let mut entry = match zip.by_index(index) {
        Ok(e) if e.is_dir() => {
            let _ = head.send(Err(ExtractError::NotFound));
            return;
        }
        Ok(e) => e,
        Err(e) => {
            let _ = head.send(Err(ExtractError::Corrupt(e.to_string())));
            return;
        }
    };
    let size = entry.size();
    if let Err(e) = check_limits(size, entry.compressed_size(), &limits) {
        let _ = head.send(Err(e));
        return;
    }
    if head.send(Ok(size)).is_err() {
        return;
    }
    // The declared size bounds what is read: an entry that inflates to more
    // than it declared is cut off and reported, never streamed on.
    let mut sent = 0u64;
    loop {
        let want = usize::try_from((size - sent).min(BLOCK as u64)).unwrap_or(BLOCK);
        let mut buf = BytesMut::zeroed(want.max(1));
        let result = entry.read(&mut buf);
        let block = match result {
            Ok(0) if sent == size => return,
            Ok(0) => Err(ExtractError::Corrupt(format!(
                "entry ends at {sent} of {size} bytes"
            ))),
            Ok(_) if sent == size => {
                Err(ExtractError::Corrupt("entry longer than declared".into()))
            }
            Ok(n) => {
                sent += n as u64;
                buf.truncate(n);
                Ok(buf.freeze())
            }
            Err(e) => Err(ExtractError::Corrupt(e.to_string())),
        };
        let failed = block.is_err();
        if tx.blocking_send(block).is_err() || failed {
            return;
        }
    }
}

fn check_limits(size: u64, compressed: u64, l: &Limits) -> Result<(), ExtractError> {
    if size > l.max_file_size {
        return Err(ExtractError::Limit(format!("file of {size} bytes")));
    }
    // Tiny entries compress oddly; the ratio only matters once size does.
    if size > 1 << 20 && size / compressed.max(1) > l.max_ratio {
        return Err(ExtractError::Limit(format!(
            "compression ratio {}:1",
            size / compressed.max(1)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn limits() -> Limits {
        Limits {
            max_file_size: 1 << 30,
            max_ratio: 200,
            max_entries: 1000,
        }
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in files {
            w.start_file(*name, opts).unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    async fn read_all(pkg: Package, path: &str, l: Limits) -> Result<Vec<u8>, ExtractError> {
        // A directory kept for this copy only, as upack.rs keys them.
        let dirs = Directories::new(l.max_entries);
        let key = DirKey::new("upack/t".to_string().into(), "\"t\"".into(), pkg.len());
        let mut x = extract(pkg, path.into(), l, dirs, key).await?;
        let mut out = Vec::new();
        while let Some(b) = x.body.recv().await {
            out.extend_from_slice(&b?);
        }
        assert_eq!(out.len() as u64, x.size);
        Ok(out)
    }

    #[tokio::test]
    async fn reads_from_memory_and_from_a_file_region() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = zip_of(&[("upack.json", b"{}"), ("package/a b/c.bin", &big)]);
        let got = read_all(
            Package::Bytes(z.clone().into()),
            "package/a b/c.bin",
            limits(),
        )
        .await;
        assert_eq!(got.unwrap(), big);

        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"HEADER-BEFORE-BODY").unwrap();
        f.write_all(&z).unwrap();
        let pkg = Package::File {
            file: Arc::new(f),
            offset: 18,
            len: z.len() as u64,
        };
        assert_eq!(
            read_all(pkg.clone(), "upack.json", limits()).await.unwrap(),
            b"{}"
        );
        assert!(matches!(
            read_all(pkg, "missing", limits()).await,
            Err(ExtractError::NotFound)
        ));
    }

    #[tokio::test]
    async fn limits_and_corruption() {
        let zeros = vec![0u8; 8 << 20];
        let z = zip_of(&[("bomb", &zeros)]);
        let r = read_all(Package::Bytes(z.clone().into()), "bomb", limits()).await;
        assert!(matches!(r, Err(ExtractError::Limit(_))), "{r:?}");
        let small = Limits {
            max_file_size: 1024,
            max_ratio: 1 << 20,
            ..limits()
        };
        let r = read_all(Package::Bytes(z.into()), "bomb", small).await;
        assert!(matches!(r, Err(ExtractError::Limit(_))), "{r:?}");
        let few = Limits {
            max_entries: 1,
            ..limits()
        };
        let two = zip_of(&[("a", b"1"), ("b", b"2")]);
        let r = read_all(Package::Bytes(two.into()), "a", few).await;
        assert!(matches!(r, Err(ExtractError::Limit(_))), "{r:?}");
        let r = read_all(
            Package::Bytes(Bytes::from_static(b"not a zip")),
            "a",
            limits(),
        )
        .await;
        assert!(matches!(r, Err(ExtractError::Corrupt(_))), "{r:?}");
    }
}
