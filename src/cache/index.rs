//! The disk tier's index: which entries exist, their size, key and last use,
//! rebuilt from the files at start. It drives eviction under `disk_size`,
//! purges by key prefix and the size statistics. Once the start-up scan is
//! in (`ready`), a name it does not have is a miss without a look at the
//! disk; before that, lookups go to the files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use super::durable::Durability;
use super::load::load;

/// One file in `data/`.
#[derive(Debug, Clone)]
struct Item {
    /// The cache key, when the file records it.
    key: Option<Arc<str>>,
    /// Bytes on disk (header and body).
    size: u64,
    /// Logical clock of the last use; smaller is older.
    used: u64,
}

/// The index of `data/`, keyed by file name (the key's hash).
#[derive(Default)]
pub struct DiskIndex {
    items: Mutex<HashMap<String, Item>>,
    bytes: AtomicU64,
    clock: AtomicU64,
    /// Set once the start-up scan has been merged.
    ready: AtomicBool,
}

impl DiskIndex {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A file was written (or replaced).
    pub fn insert(&self, name: &str, key: &str, size: u64) {
        let item = Item {
            key: Some(Arc::from(key)),
            size,
            used: self.tick(),
        };
        if let Some(old) = self.lock().insert(name.to_owned(), item) {
            self.bytes.fetch_sub(old.size, Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Whether a file of this name is known.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// An entry was read.
    pub fn touch(&self, name: &str) {
        let t = self.tick();
        if let Some(i) = self.lock().get_mut(name) {
            i.used = t;
        }
    }

    /// A file was removed.
    pub fn remove(&self, name: &str) {
        if let Some(old) = self.lock().remove(name) {
            self.bytes.fetch_sub(old.size, Ordering::Relaxed);
        }
    }

    /// Bytes and entries on disk (complete once `ready`).
    pub fn totals(&self) -> (u64, u64) {
        let n = self.lock().len() as u64;
        (self.bytes.load(Ordering::Relaxed), n)
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The least recently used entries whose sizes add up to at least
    /// `excess` bytes, oldest first, with their keys. Entries whose key is
    /// `in_use` (served from memory, so their disk use is never booked
    /// here) are taken last and count as used now.
    pub fn victims(
        &self,
        excess: u64,
        in_use: impl Fn(&str) -> bool,
    ) -> Vec<(String, Option<Arc<str>>)> {
        // A snapshot: the memory tier is asked without the lock held, and
        // only about the oldest entries, until enough is found.
        let mut all: Vec<(String, Option<Arc<str>>, u64, u64)> = self
            .lock()
            .iter()
            .map(|(n, i)| (n.clone(), i.key.clone(), i.size, i.used))
            .collect();
        all.sort_unstable_by_key(|(.., used)| *used);
        let mut freed = 0;
        let (mut out, mut spared) = (Vec::new(), Vec::new());
        for (name, key, size, _) in all {
            if freed >= excess {
                break;
            }
            if key.as_deref().is_some_and(&in_use) {
                spared.push((name, key, size));
                continue;
            }
            freed += size;
            out.push((name, key));
        }
        // Only entries in use were left to take: they go too, oldest first.
        let mut spared = spared.into_iter();
        while freed < excess {
            let Some((name, key, size)) = spared.next() else {
                break;
            };
            freed += size;
            out.push((name, key));
        }
        let mut items = self.lock();
        for (name, ..) in spared {
            let t = self.clock.fetch_add(1, Ordering::Relaxed);
            if let Some(i) = items.get_mut(&name) {
                i.used = t;
            }
        }
        out
    }

    /// File names and keys of entries whose key satisfies `pred`.
    pub fn matching(&self, pred: impl Fn(&str) -> bool) -> Vec<(String, Arc<str>)> {
        self.lock()
            .iter()
            .filter_map(|(n, i)| {
                i.key
                    .as_ref()
                    .filter(|k| pred(k))
                    .map(|k| (n.clone(), k.clone()))
            })
            .collect()
    }

    /// Walks `data/` and merges what it finds; entries written meanwhile keep
    /// their newer state. Entries of the earlier two-level layout are moved
    /// into place; files that are not entries are left alone and logged.
    /// Temp files of earlier runs (crashed fills) are removed; those named
    /// with `mine`, this run's temp prefix, belong to fills under way.
    /// Entries a power cut may have torn (`durable.rs`) have their seal
    /// checked on the way; damaged ones are removed. Runs on a thread of
    /// its own at start.
    pub fn rebuild(&self, data: &Path, mine: &str, durable: &Durability) {
        let mut found = Vec::new();
        let mut all_checked = true;
        for file in walk(data, mine) {
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            if durable.suspect(meta.modified().unwrap_or(UNIX_EPOCH)) {
                match load(&file, durable) {
                    Ok(Some(_)) => {}
                    Ok(None) => continue, // damaged and removed, or gone
                    Err(e) => {
                        // Left to the check on first load; the marker stays.
                        tracing::warn!(error = %e, "cannot check a cache entry at start");
                        all_checked = false;
                    }
                }
            }
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            found.push((name, read_key(&file, meta.len()), meta.len()));
        }
        let mut items = self.lock();
        for (name, key, size) in found {
            if items.contains_key(&name) {
                continue;
            }
            // Files from before this run are older than anything used since.
            items.insert(
                name,
                Item {
                    key: key.map(Arc::from),
                    size,
                    used: 0,
                },
            );
            self.bytes.fetch_add(size, Ordering::Relaxed);
        }
        drop(items);
        self.ready.store(true, Ordering::Relaxed);
        if all_checked {
            durable.window_checked();
        }
    }
}

/// Temp files start with this; entry names are hex, so the two never mix.
pub(crate) const TEMP_PREFIX: &str = ".fill-";

/// An entry's file name: 64 lowercase hex digits (a SHA-256).
pub fn is_entry_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The entry files under `data/ab/`, moving those of the old layout
/// (`data/ab/cd/name`) up one level and removing earlier runs' temp files
/// on the way.
fn walk(data: &Path, mine: &str) -> Vec<PathBuf> {
    let list = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let name_of = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let mut out = Vec::new();
    let mut strays = 0usize;
    for fan in list(data).into_iter().filter(|p| p.is_dir()) {
        for p in list(&fan) {
            let name = name_of(&p).unwrap_or_default();
            if p.is_dir() {
                for old in list(&p) {
                    match name_of(&old).filter(|n| is_entry_name(n)) {
                        Some(n) if old.is_file() => {
                            let to = fan.join(&n);
                            if std::fs::rename(&old, &to).is_ok() {
                                out.push(to);
                            }
                        }
                        _ => strays += 1,
                    }
                }
                let _ = std::fs::remove_dir(&p);
            } else if is_entry_name(&name) && p.is_file() {
                out.push(p);
            } else if name.starts_with(TEMP_PREFIX) {
                if !name.starts_with(mine) {
                    let _ = std::fs::remove_file(&p);
                }
            } else {
                strays += 1;
            }
        }
    }
    if strays > 0 {
        tracing::warn!(
            dir = %data.display(),
            files = strays,
            "files in the cache directory that are not entries are ignored"
        );
    }
    out
}

/// The key recorded in an entry file's header, if readable.
fn read_key(path: &Path, size: u64) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let (_, key, ..) = super::entry::read_header(&file, size).ok()?.ok()?;
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_victims_and_totals() {
        let ix = DiskIndex::default();
        ix.insert("a", "nuget/flat/a/1.0.0/a.nupkg", 100);
        ix.insert("b", "nuget/flat/b/1.0.0/b.nupkg", 100);
        ix.insert("c", "proget/f/flat/c/1.0.0/c.nupkg", 100);
        ix.touch("a");
        assert_eq!(ix.totals(), (300, 3));
        let names =
            |v: Vec<(String, Option<Arc<str>>)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(ix.victims(150, |_| false)), ["b", "c"]);
        // An entry memory serves goes last, and counts as used.
        assert_eq!(names(ix.victims(150, |k| k.contains("/b/"))), ["c", "a"]);
        assert_eq!(names(ix.victims(100, |_| false)), ["c"]);
        // With only entries in use, they go after all, oldest first.
        assert_eq!(names(ix.victims(150, |_| true)), ["c", "a"]);
        ix.remove("b");
        assert_eq!(ix.totals(), (200, 2));
        let m = ix.matching(|k| k.starts_with("proget/f/"));
        assert_eq!(m.len(), 1);
        ix.insert("a", "nuget/flat/a/1.0.0/a.nupkg", 50);
        assert_eq!(
            ix.totals(),
            (150, 2),
            "replacing an entry replaces its size"
        );
    }

    /// Stray files (issue #13 row 8: they killed the evictor) are skipped;
    /// entries of the old two-level layout are moved up and indexed.
    #[test]
    fn rebuild_skips_strays_and_moves_old_layout_entries() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let name = "ab".to_string() + &"0".repeat(62);
        std::fs::create_dir_all(data.join("ab/cd")).unwrap();
        std::fs::write(data.join("ab/cd").join(&name), b"old layout").unwrap();
        std::fs::write(data.join("ab/x"), b"stray").unwrap();
        std::fs::write(data.join("ab/cd/y"), b"stray").unwrap();
        std::fs::write(
            data.join("ab")
                .join(std::ffi::OsStr::from_bytes(b"\xff\xfe")),
            b"",
        )
        .unwrap();
        std::fs::write(data.join("loose-file"), b"stray").unwrap();
        // A crashed run's temp file goes; this run's fill in progress stays.
        std::fs::write(data.join("ab/.fill-deadbeef-1x"), b"crashed").unwrap();
        std::fs::write(data.join("ab/.fill-0badf00d-2y"), b"filling").unwrap();
        let ix = DiskIndex::default();
        ix.rebuild(&data, ".fill-0badf00d-", &Durability::trusting_all());
        assert!(!data.join("ab/.fill-deadbeef-1x").exists());
        assert!(data.join("ab/.fill-0badf00d-2y").exists());
        assert!(ix.ready());
        assert_eq!(ix.totals(), (10, 1));
        assert!(ix.contains(&name));
        assert!(data.join("ab").join(&name).is_file(), "moved up");
        // Eviction only ever sees entry names.
        assert_eq!(ix.victims(1, |_| false), vec![(name, None)]);
    }
}
