//! Entries made locally (a content archive built from a cached package),
//! written straight into a cache temp file instead of being built in
//! memory: `EntryWriter` is the body's `Write + Seek` view of that file,
//! past the entry header, and `Cache::put_written` seals and publishes it.

use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};

use super::disk::TempEntry;
use super::entry::{encode_header, Seal};
use super::load::{blocking, io_err};
use super::{Cache, CacheError, Found, Meta};
use crate::keys::CacheKey;

/// The body of a new entry, written in place in its temp file. Positions
/// are the body's own (0 = first body byte), so an archive writer that
/// seeks back to patch a header lands in the body, never in the entry
/// header before it.
pub struct EntryWriter {
    temp: TempEntry,
    /// Where the body starts in the file (the header's length).
    base: u64,
    pos: u64,
    end: u64,
    /// The first write error, kept where the caller can read it after the
    /// writer was consumed: a failed write is the disk's fault, not the
    /// package's, and must not be taken for a corrupt package.
    failure: Arc<OnceLock<String>>,
}

impl EntryWriter {
    /// The first write error, readable after the writer is gone.
    pub fn failure(&self) -> Arc<OnceLock<String>> {
        self.failure.clone()
    }

    /// Length and CRC-32 of what was written, read back from the file (an
    /// archive writer patches earlier bytes, so a running CRC would lie).
    fn seal(&self) -> Result<Seal, CacheError> {
        let len = self.end;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0u64;
        while at < len {
            let want = usize::try_from((len - at).min(buf.len() as u64)).unwrap_or(buf.len());
            let file = &self.temp.shared;
            file.read_exact_at(&mut buf[..want], self.base + at)
                .map_err(|e| io_err(std::path::Path::new("entry temp file"), e))?;
            crc.update(&buf[..want]);
            at += want as u64;
        }
        Ok(Seal {
            len,
            crc: crc.finalize(),
        })
    }
}

impl Write for EntryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = self.temp.shared.write_all_at(buf, self.base + self.pos) {
            let _ = self.failure.set(e.to_string());
            return Err(e);
        }
        self.pos += buf.len() as u64;
        self.end = self.end.max(self.pos);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for EntryWriter {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.end.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

impl Cache {
    /// A writer for the body of a new entry `key` with `meta`, or `None`
    /// while the disk takes no writes (the caller builds in memory then).
    pub fn entry_writer(
        &self,
        key: &CacheKey,
        meta: &Meta,
    ) -> Result<Option<EntryWriter>, CacheError> {
        if !self.disk.writable.ok() {
            return Ok(None);
        }
        let temp = self.disk.temp(key)?;
        let header = encode_header(meta, key.as_str());
        temp.write_at(&header, 0)
            .inspect_err(|e| self.disk.writable.failed(e))?;
        Ok(Some(EntryWriter {
            temp,
            base: header.len() as u64,
            pos: 0,
            end: 0,
            failure: Arc::new(OnceLock::new()),
        }))
    }

    /// Seals and publishes what `w` wrote as the entry for `key`, and
    /// returns it as a reader finds it.
    pub async fn put_written(
        &self,
        key: &CacheKey,
        w: EntryWriter,
    ) -> Result<Option<Found>, CacheError> {
        let (temp, seal) = blocking(move || {
            let seal = w.seal()?;
            Ok((w.temp, seal))
        })
        .await?;
        self.disk.commit(key, temp, seal).await?;
        self.get(key).await
    }

    /// The error for a build whose writer failed: the disk's fault, so
    /// writes are turned off for a while as for any failed write.
    pub fn write_failed(&self, msg: &str) -> CacheError {
        let e = CacheError::Io {
            path: "entry temp file".into(),
            msg: msg.into(),
        };
        self.disk.writable.failed(&e);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::DiskTier;

    /// Positions are the body's, patches land in place, and the seal is
    /// that of the final bytes (as an archive writer patching headers needs).
    #[test]
    fn writes_seeks_and_seals_the_final_body() {
        let dir = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(dir.path()).unwrap();
        let key = CacheKey::from("upack/x-content.zip".to_string());
        let temp = tier.temp(&key).unwrap();
        temp.write_at(b"HEADER", 0).unwrap();
        let mut w = EntryWriter {
            temp,
            base: 6,
            pos: 0,
            end: 0,
            failure: Arc::new(OnceLock::new()),
        };
        w.write_all(b"hello world").unwrap();
        assert_eq!(w.seek(SeekFrom::Start(0)).unwrap(), 0);
        w.write_all(b"J").unwrap();
        assert_eq!(w.seek(SeekFrom::End(-5)).unwrap(), 6);
        w.write_all(b"W").unwrap();
        assert_eq!(w.seek(SeekFrom::Current(1)).unwrap(), 8);
        assert!(w.seek(SeekFrom::Current(-9)).is_err());
        let seal = w.seal().unwrap();
        let want = b"Jello World";
        assert_eq!((seal.len, seal.crc), (11, crc32fast::hash(want)));
        let mut all = vec![0u8; 17];
        w.temp.shared.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(&all, b"HEADERJello World");
    }
}
