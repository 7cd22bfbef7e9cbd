//! Central directories of cached packages, parsed once and kept (bounded),
//! so a request for one file does not re-read the whole directory.
//!
//! A package is opened in two steps: the end records (`eocd.rs`) say how
//! many entries it has, and only a package within the limit is handed to
//! `zip::ZipArchive::new`, which validates the directory and builds it in
//! memory. `ZipArchive` is `Clone` and shares that directory through an
//! `Arc`, so every request clones the kept archive instead of parsing.
//!
//! The kept archive must not pin the package it was parsed from (a body in
//! the memory tier, or a cache file the evictor has unlinked): its reader
//! reads whichever copy of the package the requests using it lend it, and
//! holds none while nobody does. Every copy under one key, etag and length
//! is the same bytes, so which copy a read goes to does not matter.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use zip::ZipArchive;

use super::{eocd, ExtractError, Package};
use crate::keys::CacheKey;

/// Kept directories are weighed in units of this many bytes of memory,
/// about one parsed entry with a typical name.
const UNIT: u64 = 256;

/// Weight of all kept directories: 200,000 units are about 50 MB, some
/// hundred typical packages. Raised when the limits let a larger single
/// directory through, so that one is kept too (see `Directories::new`).
const DIRECTORY_WEIGHT: u64 = 200_000;

/// Central-directory bytes allowed per permitted entry: real entries take
/// 50-250 bytes (fixed header, path, a few extra fields). Without this, a
/// package within the entry limit could still make the parse allocate
/// gigabytes of names and comments (up to 196 KiB per entry).
const DIR_BYTES_PER_ENTRY: u64 = 256;
/// ... but never less than this, so a small `max_entries` does not refuse
/// a few entries with long paths.
const MIN_DIR_BYTES: u64 = 1 << 20;

/// The largest central directory a package within `max_entries` may have.
fn max_dir_size(max_entries: u64) -> u64 {
    max_entries
        .saturating_mul(DIR_BYTES_PER_ENTRY)
        .max(MIN_DIR_BYTES)
}

/// Memory of a parsed directory, estimated high. Measured on packages of
/// 200,000 entries: 252 bytes an entry with 28-character names, 422 with
/// 128-character ones, a fixed part plus about twice the name (the crate
/// keeps it as the entry's name and as its lookup key).
fn memory(entries: u64, dir_size: u64) -> u64 {
    entries
        .saturating_mul(128)
        .saturating_add(dir_size.saturating_mul(2))
}

/// Which copy of which package a directory belongs to: a replaced entry
/// (new etag or length) never reuses an old directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirKey {
    key: CacheKey,
    etag: String,
    len: u64,
}

impl DirKey {
    pub fn new(key: CacheKey, etag: String, len: u64) -> Self {
        DirKey { key, etag, len }
    }
}

/// The kept directories, weighed by their memory; cheap to clone (shared).
#[derive(Clone)]
pub struct Directories {
    cache: moka::sync::Cache<DirKey, Arc<Directory>>,
}

impl Directories {
    /// Room for about 50 MB of directories, and at least for the largest
    /// one a package within `max_entries` can have (64 MB at the default
    /// 100,000): otherwise such a package would be parsed per request.
    pub fn new(max_entries: u64) -> Self {
        let largest = memory(max_entries, max_dir_size(max_entries));
        let cache = moka::sync::Cache::builder()
            .max_capacity(DIRECTORY_WEIGHT.max(largest / UNIT))
            .weigher(|_k, d: &Arc<Directory>| d.weight)
            .build();
        Directories { cache }
    }

    /// The directory of `pkg`, parsed now unless it is kept. Blocks: call it
    /// from a blocking thread. Concurrent first requests for one package
    /// wait for a single parse instead of each running their own.
    pub fn get(
        &self,
        key: DirKey,
        pkg: &Package,
        max_entries: u64,
    ) -> Result<Arc<Directory>, ExtractError> {
        self.cache
            .try_get_with(key, || {
                Directory::open(pkg.clone(), max_entries).map(Arc::new)
            })
            .map_err(|e| (*e).clone())
    }

    /// Forgets the directory of a package that turned out corrupt.
    pub fn remove(&self, key: &DirKey) {
        self.cache.invalidate(key);
    }
}

/// A parsed central directory, ready to read entries from a lent package.
pub struct Directory {
    archive: ZipArchive<Lent>,
    slot: Arc<Mutex<Slot>>,
    /// Its memory in `UNIT`s (at least one), for the cache's weigher.
    weight: u32,
}

impl Directory {
    /// Checks the end records, then parses the central directory. Reads are
    /// budgeted to the directory and end records the first step found: the
    /// zip crate falls back to earlier end records when the last one does not
    /// check out, and a package must not smuggle a bigger directory past the
    /// entry limit that way.
    pub fn open(pkg: Package, max_entries: u64) -> Result<Directory, ExtractError> {
        let len = pkg.len();
        let end = eocd::read(len, |pos, buf| pkg.read_exact_at(pos, buf))
            .map_err(ExtractError::Corrupt)?;
        if end.entries > max_entries {
            return Err(ExtractError::Limit(format!("{} entries", end.entries)));
        }
        if end.dir_size > max_dir_size(max_entries) {
            return Err(ExtractError::Limit(format!(
                "central directory of {} bytes",
                end.dir_size
            )));
        }
        // The zip crate reads the end records twice (searching, then
        // parsing) in windows of up to 2 KiB, then the directory once.
        let budget = end
            .dir_size
            .saturating_add(2 * len.saturating_sub(end.eocd_at))
            .saturating_add(64 * 1024);
        let slot = Arc::new(Mutex::new(Slot {
            pkg: Some(pkg),
            users: 0,
            budget: Some(budget),
            overrun: false,
        }));
        let reader = Lent {
            slot: slot.clone(),
            pos: 0,
            len,
        };
        let archive = ZipArchive::new(reader).map_err(|e| {
            // The crate reports I/O errors without their text; say which.
            let why = if lock(&slot).overrun {
                "reads beyond the central directory its end records declare".into()
            } else {
                e.to_string()
            };
            ExtractError::Corrupt(why)
        })?;
        // What the crate parsed is what counts (it would only differ if it
        // chose other end records than the first step did).
        if archive.len() as u64 > max_entries {
            return Err(ExtractError::Limit(format!("{} entries", archive.len())));
        }
        {
            let mut s = lock(&slot);
            s.pkg = None;
            s.budget = None;
        }
        let weight = memory(archive.len() as u64, end.dir_size) / UNIT;
        Ok(Directory {
            weight: u32::try_from(weight).unwrap_or(u32::MAX).max(1),
            archive,
            slot,
        })
    }

    /// The archive, reading from `pkg` until the returned lease is dropped.
    pub fn lend(self: &Arc<Self>, pkg: Package) -> Lease {
        let mut s = lock(&self.slot);
        s.users += 1;
        // A copy already lent by a concurrent request holds the same bytes.
        s.pkg.get_or_insert(pkg);
        Lease {
            archive: self.archive.clone(),
            dir: self.clone(),
        }
    }
}

/// An archive a request reads from; the package it lent is released when
/// the last lease of the directory is dropped.
pub struct Lease {
    pub archive: ZipArchive<Lent>,
    dir: Arc<Directory>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut s = lock(&self.dir.slot);
        s.users = s.users.saturating_sub(1);
        if s.users == 0 {
            s.pkg = None;
        }
    }
}

/// The package a directory's reads go to.
struct Slot {
    pkg: Option<Package>,
    /// Requests reading through the directory right now.
    users: usize,
    /// Bytes the parse may still read; `None` once the directory is built.
    budget: Option<u64>,
    /// Whether the parse tried to read past its budget.
    overrun: bool,
}

/// Read + Seek over whichever package is lent to a directory; each clone of
/// the archive has its own position.
#[derive(Clone)]
pub struct Lent {
    slot: Arc<Mutex<Slot>>,
    pos: u64,
    len: u64,
}

impl Read for Lent {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.len.saturating_sub(self.pos).min(buf.len() as u64);
        // Only the package handle is taken under the lock (a reference
        // count), so concurrent requests read in parallel.
        let pkg = {
            let mut s = lock(&self.slot);
            if let Some(left) = s.budget {
                let Some(left) = left.checked_sub(want) else {
                    s.overrun = true;
                    return Err(io::Error::other("read past the central directory"));
                };
                s.budget = Some(left);
            }
            s.pkg.clone()
        };
        let pkg = pkg.ok_or_else(|| io::Error::other("no package lent to the directory"))?;
        let n = pkg.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Lent {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

/// A poisoned lock only means another reader panicked; the slot's fields
/// are each written in one step, so they are still consistent.
fn lock(m: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::PackageCheck;
    use std::io::Write;

    fn zip_of(names: &[String]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for name in names {
            w.start_file(name.as_str(), opts).unwrap();
            w.write_all(name.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn numbered(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("package/f{i}")).collect()
    }

    fn bytes(z: &[u8]) -> Package {
        Package::Bytes(z.to_vec().into())
    }

    fn read(lease: &mut Lease, name: &str) -> String {
        let mut s = String::new();
        lease
            .archive
            .by_name(name)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// A zip of 2,000 entries followed by end records the zip crate gives
    /// up on (a multi-disk archive) but which claim a single entry: the
    /// crate then falls back to the real records before them.
    fn smuggled() -> Vec<u8> {
        let mut z = zip_of(&numbered(2000));
        let cd = zip::ZipArchive::new(io::Cursor::new(&z))
            .unwrap()
            .central_directory_start();
        z.extend_from_slice(b"PK\x05\x06");
        z.extend_from_slice(&[1, 0, 0, 0, 1, 0, 1, 0, 46, 0, 0, 0]);
        z.extend_from_slice(&u32::try_from(cd).unwrap().to_le_bytes());
        z.extend_from_slice(&[0, 0]);
        z
    }

    #[test]
    fn the_package_check() {
        let long: Vec<String> = (0..20)
            .map(|i| format!("package/{i}/{}", "n".repeat(60_000)))
            .collect();
        let table: [(&str, Vec<u8>, u64, &str); 8] = [
            ("within the limit", zip_of(&numbered(10)), 10, "ok"),
            ("empty", zip_of(&[]), 1, "ok"),
            ("one entry over", zip_of(&numbered(11)), 10, "entries"),
            ("2,000 entries", zip_of(&numbered(2000)), 1000, "entries"),
            ("long names", zip_of(&long), 20, "central directory"),
            ("a few long names", zip_of(&long[..2]), 2, "ok"),
            ("not a zip", b"PK\x03\x04 not a zip".to_vec(), 10, "corrupt"),
            ("smuggled directory", smuggled(), 1000, "beyond"),
        ];
        for (what, z, max, want) in table {
            let got = PackageCheck { max_entries: max }.run(bytes(&z));
            match (want, got) {
                ("ok", Ok(())) => {}
                ("corrupt", Err(ExtractError::Corrupt(_))) => {}
                (w, Err(ExtractError::Limit(m))) if m.contains(w) => {}
                (w, Err(ExtractError::Corrupt(m))) if m.contains(w) => {}
                (w, got) => panic!("{what}: want {w}, got {got:?}"),
            }
        }
    }

    #[test]
    fn kept_directories_read_any_copy_and_pin_none() {
        let z = zip_of(&numbered(3));
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"HEADER").unwrap();
        f.write_all(&z).unwrap();
        let file = Arc::new(f);
        let on_disk = Package::File {
            file: file.clone(),
            offset: 6,
            len: z.len() as u64,
        };
        let dirs = Directories::new(10);
        let key = DirKey::new(
            CacheKey::from("upack/a".to_string()),
            "\"e1\"".into(),
            z.len() as u64,
        );

        let dir = dirs.get(key.clone(), &on_disk, 10).unwrap();
        let mut lease = dir.lend(on_disk.clone());
        assert_eq!(read(&mut lease, "package/f1"), "package/f1");
        // Another request lends the in-memory copy meanwhile: same bytes.
        let mut other = dirs
            .get(key.clone(), &bytes(&z), 10)
            .unwrap()
            .lend(bytes(&z));
        assert_eq!(read(&mut other, "package/f2"), "package/f2");
        drop((lease, other));
        assert_eq!(Arc::strong_count(&file), 2, "released once nobody reads");

        // Kept: a second request does not parse (garbage would not parse).
        let kept = dirs.get(key.clone(), &bytes(b"garbage"), 10).unwrap();
        assert!(Arc::ptr_eq(&kept, &dir));
        assert_eq!(read(&mut kept.lend(bytes(&z)), "package/f0"), "package/f0");
        // Another etag is another copy of the entry: parsed afresh.
        let replaced = DirKey::new(CacheKey::from("upack/a".to_string()), "\"e2\"".into(), 7);
        assert!(dirs.get(replaced, &bytes(b"garbage"), 10).is_err());
        dirs.remove(&key);
        assert!(dirs.get(key, &bytes(b"garbage"), 10).is_err());
    }
}
