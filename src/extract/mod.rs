//! Single files out of cached packages: random access through the zip's
//! central directory, streamed in blocks, under limits a hostile package
//! cannot get around.

mod path;

pub use path::{entry_path, MAX_PATH};

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
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

/// An entry being streamed: its uncompressed size and its blocks. An `Err`
/// block means the entry turned out bad mid-way; the response must be cut.
pub struct Extracted {
    pub size: u64,
    pub body: mpsc::Receiver<Result<Bytes, ExtractError>>,
}

/// Opens `path` in `pkg` and streams it from a blocking thread, so the async
/// workers never inflate data. Checks happen before the first byte is sent.
pub async fn extract(
    pkg: Package,
    path: String,
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    let (head_tx, head_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || match pkg {
        Package::File { file, offset, len } => {
            run(Region::new(file, offset, len), &path, limits, head_tx, tx)
        }
        Package::Bytes(b) => run(io::Cursor::new(b), &path, limits, head_tx, tx),
    });
    let size = head_rx
        .await
        .map_err(|_| ExtractError::Corrupt("extraction stopped".into()))??;
    Ok(Extracted { size, body: rx })
}

fn run<R: Read + Seek>(
    reader: R,
    path: &str,
    limits: Limits,
    head: oneshot::Sender<Result<u64, ExtractError>>,
    tx: mpsc::Sender<Result<Bytes, ExtractError>>,
) {
    let mut zip = match zip::ZipArchive::new(reader) {
        Ok(z) => z,
        Err(e) => {
            let _ = head.send(Err(ExtractError::Corrupt(e.to_string())));
            return;
        }
    };
    if zip.len() as u64 > limits.max_entries {
        let _ = head.send(Err(ExtractError::Limit(format!("{} entries", zip.len()))));
        return;
    }
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

/// Whether a complete package body reads as a zip (its central directory
/// parses). Run before a fetched package is cached, so a corrupt one is not.
pub fn check_package(pkg: Package) -> Result<(), String> {
    let result = match pkg {
        Package::File { file, offset, len } => {
            zip::ZipArchive::new(Region::new(file, offset, len)).map(|_| ())
        }
        Package::Bytes(b) => zip::ZipArchive::new(io::Cursor::new(b)).map(|_| ()),
    };
    result.map_err(|e| e.to_string())
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

/// Read + Seek over one region of a shared file, by positional reads, so the
/// cache's file handle is never moved.
struct Region {
    file: Arc<File>,
    start: u64,
    len: u64,
    pos: u64,
}

impl Region {
    fn new(file: Arc<File>, start: u64, len: u64) -> Self {
        Region {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Region {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Region {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let t = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        self.pos = t;
        Ok(t)
    }
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
        let mut x = extract(pkg, path.into(), l).await?;
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
