//! The disk tier: one file per entry under `data/ab/`, written under a
//! temp name in that same directory and published by rename, so a reader
//! never sees a partial entry; a small new entry is written under its own
//! name and published by booking it in the index (`create_new`). Entries
//! are not fsynced one by one; `durable.rs` says what guarantees them instead.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::durable::Durability;
use super::entry::{encode_header, seal, Meta, Seal, SEAL_AT};
use super::index::DiskIndex;
use super::index::TEMP_PREFIX;
use super::load::{blocking, io_err, load, DiskEntry};
use super::removals::Removals;
use super::writable::Writable;
use super::writev::write_all_parts;
use super::CacheError;
use crate::keys::CacheKey;

/// The disk tier rooted at the configured cache directory.
pub struct DiskTier {
    data: PathBuf,
    /// Prefix of this run's temp names (`.fill-<run>-`); temp files with
    /// another run's prefix are left-overs, removed by the start-up scan.
    temp_prefix: String,
    /// Recently opened entries, so hot disk entries cost no open(), header
    /// parse or mmap per request, and all requests share one mapping.
    /// Every write or removal through this tier invalidates its key.
    open: moka::sync::Cache<CacheKey, DiskEntry>,
    /// What is on disk, for eviction, purges and statistics.
    pub index: Arc<DiskIndex>,
    /// Bytes the tier may hold; 0 = no cap.
    cap: u64,
    /// Which entries may be torn by a power cut, and the periodic sync.
    durable: Arc<Durability>,
    /// Whether writes are attempted (off for a while after one failed).
    pub writable: Writable,
    /// Removals in flight, so a load that raced one does not keep what
    /// it read (`removals.rs`): here, and where memory promotes a load.
    pub(super) removals: Removals,
}

/// Bodies up to this size are written by the calling task itself: a few
/// page-cache writes and a rename cost less than two hand-offs to the
/// blocking pool (nginx writes its cache files in the worker too).
const INLINE_WRITE_MAX: usize = 256 * 1024;

/// Eviction brings the tier down to this share of the cap, so it does not
/// run again on the very next write.
const EVICT_TO_PERCENT: u64 = 90;

/// Open entries kept, in units of 256 KiB of mapped body (at least one per
/// entry): at most 512 small entries, and at most 128 MiB of idle mappings,
/// so mapped page cache does not pile up in the process's RSS.
const OPEN_UNITS: u64 = 512;
const OPEN_UNIT: u64 = 256 * 1024;
/// An open entry unused this long is closed.
const OPEN_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// A file being filled under a temp name; dropped without `commit`, it is deleted.
pub struct TempEntry {
    named: NamedTempFile,
    /// Second handle on the same file for concurrent readers (positional reads).
    pub shared: Arc<File>,
}

/// The file name of an entry: the hex SHA-256 of its key.
fn name_for(key: &CacheKey) -> String {
    hex::encode(Sha256::digest(key.as_str().as_bytes()))
}

/// A random tag for this run's temp names.
fn run_id() -> String {
    let mut b = [0u8; 4];
    // Without randomness the process id still tells runs apart.
    if getrandom::fill(&mut b).is_err() {
        b = std::process::id().to_le_bytes();
    }
    hex::encode(b)
}

impl DiskTier {
    /// Opens (creating) the tier and removes temp files a previous run left;
    /// the index is rebuilt from the files on a background thread.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        Self::open_capped(root, 0)
    }

    /// Like `open`, with a cap in bytes (0 = none) enforced by `evict`.
    pub fn open_capped(root: &Path, cap: u64) -> Result<Self, CacheError> {
        let data = root.join("data");
        fs::create_dir_all(&data).map_err(|e| io_err(&data, e))?;
        // The 256 fan-out directories exist before any entry is written, so
        // publishing an entry is one rename, never a mkdir.
        for i in 0..=255u8 {
            let d = data.join(hex::encode([i]));
            fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
        }
        // Temp files used to live in `tmp/` (before temp names moved next
        // to their entries); whatever a previous version left there goes.
        let old_tmp = root.join("tmp");
        if old_tmp.exists() {
            fs::remove_dir_all(&old_tmp).map_err(|e| io_err(&old_tmp, e))?;
        }
        let temp_prefix = format!("{TEMP_PREFIX}{}-", run_id());
        let open = moka::sync::Cache::builder()
            .max_capacity(OPEN_UNITS)
            .weigher(|_k, e: &DiskEntry| u32::try_from(1 + e.len / OPEN_UNIT).unwrap_or(u32::MAX))
            .time_to_idle(OPEN_IDLE)
            .build();
        let index = Arc::new(DiskIndex::default());
        let durable = Durability::open(root);
        let (ix, dir, mine, d) = (
            index.clone(),
            data.clone(),
            temp_prefix.clone(),
            durable.clone(),
        );
        std::thread::Builder::new()
            .name("feedcache-index".into())
            .spawn(move || ix.rebuild(&dir, &mine, &d))
            .map_err(|e| io_err(&data, e))?;
        durable.spawn().map_err(|e| io_err(root, e))?;
        Ok(DiskTier {
            data,
            temp_prefix,
            open,
            index,
            cap,
            durable,
            writable: Writable::default(),
            removals: Removals::default(),
        })
    }

    /// Where an entry lives: `data/ab/abcd…` from a hash of the key. A flat,
    /// hashed layout over 256 pre-created directories keeps lookups to two
    /// short path components and publishing to a rename (creating
    /// directories dominated the cost of cold misses).
    pub fn path_for(&self, key: &CacheKey) -> PathBuf {
        self.path_of(&name_for(key))
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.data.join(name.get(..2).unwrap_or("00")).join(name)
    }

    /// Removes least recently used entries while the tier is over its cap
    /// (down to 90% of it), those whose key is `in_use` last. Returns the
    /// number removed. Blocking: call it from a blocking thread.
    pub fn evict(&self, in_use: impl Fn(&str) -> bool) -> usize {
        let (bytes, _) = self.index.totals();
        if self.cap == 0 || bytes <= self.cap || !self.index.ready() {
            return 0;
        }
        let target = self.cap / 100 * EVICT_TO_PERCENT;
        let victims = self.index.victims(bytes - target, in_use);
        for (name, key) in &victims {
            // With its key, so a handle kept open for it goes too and the
            // space is freed now.
            let key = key.as_deref().map(|k| CacheKey::from(k.to_owned()));
            self.drop_file(name, key.as_ref());
        }
        tracing::info!(
            removed = victims.len(),
            before = bytes,
            "evicted from the disk tier"
        );
        victims.len()
    }

    /// Removes every entry whose key satisfies `pred`; returns their keys.
    /// Refused while the start-up scan is still indexing the files, which
    /// would leave those of earlier runs out. Blocking.
    pub fn purge(&self, pred: impl Fn(&str) -> bool) -> Result<Vec<CacheKey>, CacheError> {
        if !self.index.ready() {
            return Err(CacheError::IndexLoading);
        }
        let found = self.index.matching(pred);
        let mut keys = Vec::with_capacity(found.len());
        for (name, key) in found {
            let key = CacheKey::from(key.to_string());
            self.drop_file(&name, Some(&key));
            keys.push(key);
        }
        Ok(keys)
    }

    fn drop_file(&self, name: &str, key: Option<&CacheKey>) {
        let _removing = self.removals.begin();
        if let Some(k) = key {
            self.open.invalidate(k);
        }
        let path = self.path_of(name);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove cache entry");
                return;
            }
        }
        self.index.remove(name);
    }

    /// Opens an entry; a missing file is `None`, a corrupt or torn one is
    /// removed and `None`.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<DiskEntry>, CacheError> {
        let name = name_for(key);
        if let Some(e) = self.open.get(key) {
            self.index.touch(&name);
            return Ok(Some(e));
        }
        // Once the start-up scan is in, the index knows every file: a miss
        // costs no system call.
        if self.index.ready() && !self.index.contains(&name) {
            return Ok(None);
        }
        let path = self.path_of(&name);
        let durable = self.durable.clone();
        let seen = self.removals.seen();
        let found = blocking(move || load(&path, &durable)).await?;
        if let Some(e) = &found {
            if self.removals.kept_after(seen) {
                self.open.insert(key.clone(), e.clone());
                if !self.removals.kept_after(seen) {
                    self.open.invalidate(key);
                }
            }
            self.index.touch(&name);
        }
        Ok(found)
    }

    /// Publishes a filled temp file as the entry for `key`, sealed with the
    /// body's length and CRC-32.
    pub async fn commit(
        &self,
        key: &CacheKey,
        temp: TempEntry,
        sealed: Seal,
    ) -> Result<(), CacheError> {
        let target = self.path_for(key);
        let r = blocking(move || {
            temp.write_at(&seal(sealed.len, sealed.crc), SEAL_AT)?;
            let size = temp.shared.metadata().map(|m| m.len()).unwrap_or(0);
            temp.commit_to(&target).map(|_| size)
        })
        .await;
        self.open.invalidate(key);
        let size = r.inspect_err(|e| self.writable.failed(e))?;
        self.durable.written();
        self.index.insert(&name_for(key), key.as_str(), size);
        Ok(())
    }

    /// Writes a whole entry atomically; small ones from the calling task.
    pub async fn put(&self, key: &CacheKey, meta: &Meta, body: Bytes) -> Result<(), CacheError> {
        let mut file = encode_header(meta, key.as_str());
        let at = usize::try_from(SEAL_AT).unwrap_or(12);
        file[at..at + 12].copy_from_slice(&seal(body.len() as u64, crc32fast::hash(&body)));
        let size = (file.len() + body.len()) as u64;
        let name = name_for(key);
        let target = self.path_of(&name);
        // Header and body in one `writev`: no second system call, and no
        // copy of the body behind the header (that copy and its allocation
        // were ~2% of a cold miss's user time).
        let written = if size <= INLINE_WRITE_MAX as u64 {
            match self.create_new(&name, &target, &file, &body) {
                Some(done) => done,
                None => {
                    let temp = self.temp_file(&name)?;
                    write_all_parts(&mut temp.as_file(), &file, &body)
                        .map_err(|e| io_err(temp.path(), e))
                        .and_then(|_| persist(temp, &target))
                }
            }
        } else {
            let temp = self.temp_file(&name)?;
            blocking(move || {
                write_all_parts(&mut temp.as_file(), &file, &body)
                    .map_err(|e| io_err(temp.path(), e))?;
                persist(temp, &target)
            })
            .await
        };
        self.published(key, &name, size, written)
    }

    /// Writes a new entry straight under its own name, without a temp name
    /// and rename (the rename alone was 9% of a cold miss's CPU).
    /// Only for a name the complete index does not have: no reader opens a
    /// file the index does not know, so none sees it before it is whole,
    /// and `published` books it only then. A file cut short by a crash is
    /// shorter than its seal says, which every load checks (`load.rs`); one
    /// torn by a power cut was modified after the last sync, so its CRC is
    /// checked (`durable.rs`). `None`: the name exists or the index is not
    /// complete yet; the caller writes by temp name and rename instead.
    fn create_new(
        &self,
        name: &str,
        target: &Path,
        head: &[u8],
        body: &[u8],
    ) -> Option<Result<(), CacheError>> {
        if !self.index.ready() || self.index.contains(name) {
            return None;
        }
        // Owner-only, like the temp files entries are otherwise renamed from.
        let mut f = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return None,
            Err(e) => return Some(Err(io_err(target, e))),
        };
        Some(write_all_parts(&mut f, head, body).map_err(|e| {
            // Never leave a short file under the entry's name.
            let _ = fs::remove_file(target);
            io_err(target, e)
        }))
    }

    /// Publishes a temp file that holds a whole sealed entry already (one
    /// read back from the shared tier and checked).
    pub async fn adopt(&self, key: &CacheKey, temp: TempEntry) -> Result<(), CacheError> {
        let name = name_for(key);
        let target = self.path_of(&name);
        let size = temp.shared.metadata().map(|m| m.len()).unwrap_or(0);
        let written = blocking(move || temp.commit_to(&target)).await;
        self.published(key, &name, size, written)
    }

    /// Books an entry written (or not) under `name` in the index.
    fn published(
        &self,
        key: &CacheKey,
        name: &str,
        size: u64,
        written: Result<(), CacheError>,
    ) -> Result<(), CacheError> {
        self.open.invalidate(key);
        written.inspect_err(|e| self.writable.failed(e))?;
        self.durable.written();
        self.index.insert(name, key.as_str(), size);
        Ok(())
    }

    /// The file name of `key`'s entry (also its name in a shared tier).
    pub fn name(&self, key: &CacheKey) -> String {
        name_for(key)
    }

    /// Removes an entry if present.
    pub async fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        let _removing = self.removals.begin();
        self.open.invalidate(key);
        let name = name_for(key);
        let path = self.path_of(&name);
        blocking(move || match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path, e)),
            _ => Ok(()),
        })
        .await?;
        self.index.remove(&name);
        Ok(())
    }

    /// A new file, deleted when dropped unless persisted, in the directory
    /// its entry `name` will live in (as nginx's `use_temp_path=off`): the
    /// rename stays within one directory, and creates spread over the 256
    /// directories instead of all taking one directory's lock (a tenth of a
    /// cold miss's time went to that lock and to inode allocation there).
    fn temp_file(&self, name: &str) -> Result<NamedTempFile, CacheError> {
        let dir = self.data.join(name.get(..2).unwrap_or("00"));
        tempfile::Builder::new()
            .prefix(&self.temp_prefix)
            .tempfile_in(&dir)
            .map_err(|e| io_err(&dir, e))
            .inspect_err(|e| self.writable.failed(e))
    }

    /// A new temp file for a streaming fill of `key`.
    pub fn temp(&self, key: &CacheKey) -> Result<TempEntry, CacheError> {
        let named = self.temp_file(&name_for(key))?;
        let shared = named
            .as_file()
            .try_clone()
            .map_err(|e| io_err(named.path(), e))?;
        Ok(TempEntry {
            named,
            shared: Arc::new(shared),
        })
    }
}

/// Renames a complete temp file into place: a reader sees the entry
/// complete or not at all. After a power cut it may be torn; its seal tells
/// (`durable.rs`).
fn persist(named: NamedTempFile, target: &Path) -> Result<(), CacheError> {
    // Rename first: the fan-out directories are created at start.
    let named = match named.persist(target) {
        Ok(_) => return Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => e.file,
        Err(e) => return Err(io_err(target, e.error)),
    };
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    named.persist(target).map_err(|e| io_err(target, e.error))?;
    Ok(())
}

impl TempEntry {
    /// Positional write (blocking).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), CacheError> {
        self.shared
            .write_all_at(buf, offset)
            .map_err(|e| io_err(self.named.path(), e))
    }

    /// Sizes the file to `len` so it can be mapped before the body arrives;
    /// `false` when the file system refuses (then readers use `read_at`).
    pub fn presize(&self, len: u64) -> bool {
        self.shared.set_len(len).is_ok()
    }

    /// Renames into place (see `persist`).
    pub fn commit_to(self, target: &Path) -> Result<(), CacheError> {
        persist(self.named, target)
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
