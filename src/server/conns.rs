//! The cap on open client connections, and which connection gives way when
//! it is reached.
//!
//! Like nginx when it runs out of `worker_connections`, a new connection
//! over the cap first closes the oldest connection that is idle between
//! requests or still sending its request header: those hold a slot without
//! being served, and a flood of them (slowloris, thousands of idle
//! keep-alives) must not lock real clients out. Connections with a request
//! in progress are never closed for a newcomer; when every slot is busy
//! serving, the newcomer is refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Open connections and the ones that may be closed to make room.
pub struct Conns {
    cap: usize,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// Connections waiting for (the rest of) a request header, oldest first.
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

/// One admitted connection; its slot is freed when this is dropped.
pub struct Slot {
    conns: Arc<Conns>,
    id: u64,
    /// Notified when the connection must close to make room.
    shed: Arc<Notify>,
}

/// A connection registered as waiting; unregistered when dropped.
pub struct Waiting<'a> {
    slot: &'a Slot,
}

impl Conns {
    /// A limiter for at most `cap` open connections (at least 1).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Conns {
            cap: cap.max(1),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            waiting: Mutex::new(BTreeMap::new()),
        })
    }

    /// Open connections now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a new connection, closing the oldest waiting one when the cap
    /// is reached; `None` (refuse) when every open connection is busy.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.cap {
            let victim = self.lock().pop_first();
            match victim {
                // The victim's task closes it and frees its slot; this one
                // takes the place in the meantime (briefly cap + 1).
                Some((_, shed)) => shed.notify_one(),
                None => {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
            }
        }
        Some(Slot {
            conns: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            shed: Arc::new(Notify::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Slot {
    /// Marks the connection as closable for a newcomer until the returned
    /// guard is dropped (i.e. until its request header is in).
    pub fn waiting(&self) -> Waiting<'_> {
        self.conns.lock().insert(self.id, self.shed.clone());
        Waiting { slot: self }
    }
}

impl Waiting<'_> {
    /// Resolves when this connection must close to make room.
    pub async fn shed(&self) {
        self.slot.shed.notified().await
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.slot.conns.lock().remove(&self.slot.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_the_cap_the_oldest_waiting_connection_gives_way() {
        let conns = Conns::new(2);
        let a = conns.admit().unwrap();
        let b = conns.admit().unwrap();
        // Both busy: a third is refused.
        assert!(conns.admit().is_none());
        assert_eq!(conns.open(), 2);
        let wa = a.waiting();
        let wb = b.waiting();
        // Now the oldest waiting one (a) is told to close.
        let c = conns.admit().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), wa.shed())
            .await
            .unwrap();
        drop(wa);
        drop(a);
        assert_eq!(conns.open(), 2);
        // b still waits and is next in line; c is busy.
        let d = conns.admit().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), wb.shed())
            .await
            .unwrap();
        drop(wb);
        drop((b, c, d));
        assert_eq!(conns.open(), 0);
    }
}
