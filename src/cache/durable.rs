//! Durability of the disk tier without an fsync per entry.
//!
//! Entries are published (by rename, or a small new one written under its
//! own name, `disk.rs`) without `fdatasync` (it was the largest single cost
//! of a cold miss). Instead, a background thread calls
//! `syncfs` on the cache's file system every `SYNC_EVERY` while entries are
//! being written, and then records in `durable` the time at which that sync
//! started: every entry file last written before it is on stable storage.
//!
//! After a power cut, only entries written after the recorded time can be
//! torn (short, or zero-filled where the data never reached the disk).
//! At start, that time is read back; an entry last modified between it and
//! this process's start is "suspect", and its seal (length and CRC-32, see
//! `entry.rs`) is checked when it is first loaded, and by the start-up scan
//! (`index.rs`); a mismatch removes it and the next request fetches it
//! again. A `kill -9` loses nothing: the page cache survives the process,
//! and temp files never become entries.
//!
//! The marker moves only after the scan has checked every suspect entry
//! (`window_checked`): a sync cannot repair an entry torn before this run,
//! so a marker moved past an unchecked one would let the next run serve it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often written entries are made durable.
const SYNC_EVERY: Duration = Duration::from_secs(2);
/// File in the cache directory holding the last durable time.
const MARKER: &str = "durable";
/// File modification times come from a coarse clock; keep this much margin.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// Which entries must be verified before they are served.
pub struct Durability {
    root: PathBuf,
    /// Entries last modified at or after this (and before `started`) may be torn.
    trusted_before: SystemTime,
    /// When this process opened the cache: entries written since are ours.
    started: SystemTime,
    /// Entries were written since the last sync.
    dirty: AtomicBool,
    /// Every suspect entry has been checked (or removed) by the start-up
    /// scan; until then the marker stays where the last run left it.
    checked: AtomicBool,
}

impl Durability {
    /// Reads the marker left by the previous run (none: everything written
    /// in the new format is suspect until verified).
    pub fn open(root: &Path) -> Arc<Self> {
        let trusted_before = std::fs::read_to_string(root.join(MARKER))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(UNIX_EPOCH, |ns| UNIX_EPOCH + Duration::from_nanos(ns));
        Arc::new(Durability {
            root: root.to_owned(),
            trusted_before,
            started: SystemTime::now(),
            dirty: AtomicBool::new(false),
            checked: AtomicBool::new(false),
        })
    }

    /// The start-up scan has checked every suspect entry: the next round
    /// may move the marker past them (it syncs first, so entries checked
    /// in the page cache after a `kill -9` are on disk by then).
    pub fn window_checked(&self) {
        self.checked.store(true, Ordering::Release);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// One that suspects no entry, for tests of other parts.
    #[cfg(test)]
    pub fn trusting_all() -> Arc<Self> {
        Arc::new(Durability {
            root: PathBuf::new(),
            trusted_before: UNIX_EPOCH,
            started: UNIX_EPOCH,
            dirty: AtomicBool::new(false),
            checked: AtomicBool::new(false),
        })
    }

    /// Whether an entry last modified at `mtime` must have its seal checked.
    pub fn suspect(&self, mtime: SystemTime) -> bool {
        mtime >= self.trusted_before && mtime < self.started
    }

    /// An entry was written; the next sync round makes it durable.
    pub fn written(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Starts the background thread that syncs and records the marker.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let this = self.clone();
        crate::background::every("sync", SYNC_EVERY, move || this.sync_round())
    }

    /// One round: if anything was written, sync the file system and record
    /// when the sync started. Public for tests.
    pub fn sync_round(&self) {
        if !self.checked.load(Ordering::Acquire) || !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let began = SystemTime::now()
            .checked_sub(CLOCK_SLACK)
            .unwrap_or(UNIX_EPOCH);
        if let Err(e) = self.sync_and_mark(began) {
            tracing::warn!(error = %e, "cannot make the disk tier durable");
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    fn sync_and_mark(&self, began: SystemTime) -> std::io::Result<()> {
        let dir = File::open(&self.root)?;
        rustix::fs::syncfs(&dir)?;
        let ns = began.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        // The marker itself is written atomically and synced: a marker that
        // claims more than was synced would let a torn entry through.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root)?;
        writeln!(tmp, "{ns}")?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.root.join(MARKER)).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn suspect_between_the_last_sync_and_this_run() {
        let d = Durability {
            root: PathBuf::new(),
            trusted_before: at(100),
            started: at(200),
            dirty: AtomicBool::new(false),
            checked: AtomicBool::new(false),
        };
        for (mtime, want) in [
            (50, false),
            (100, true),
            (150, true),
            (200, false),
            (250, false),
        ] {
            assert_eq!(d.suspect(at(mtime)), want, "{mtime}");
        }
    }

    #[test]
    fn the_marker_moves_only_after_writes_once_the_window_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let first = Durability::open(dir.path());
        assert_eq!(first.trusted_before, UNIX_EPOCH, "no marker yet");
        let marker = || Durability::open(dir.path()).trusted_before;
        first.sync_round();
        assert_eq!(marker(), UNIX_EPOCH, "nothing written");
        first.written();
        first.sync_round();
        assert_eq!(marker(), UNIX_EPOCH, "written, but the window is unchecked");
        let before = SystemTime::now() - CLOCK_SLACK;
        first.window_checked();
        first.sync_round();
        let moved = marker();
        assert!(moved >= before - Duration::from_millis(1));
        assert!(moved <= SystemTime::now());
        first.sync_round();
        assert_eq!(marker(), moved, "nothing written since");
    }
}
