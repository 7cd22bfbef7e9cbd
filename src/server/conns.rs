//! The cap on open client connections, which connection gives way when it
//! is reached, and the deadlines of connections waiting for a request.
//!
//! Like nginx when it runs out of `worker_connections`, a new connection
//! over the cap first closes the oldest connection that is idle between
//! requests or still sending its request header: those hold a slot without
//! being served, and a flood of them (slowloris, thousands of idle
//! keep-alives) must not lock real clients out. Connections with a request
//! in progress are never closed for a newcomer; when every slot is busy
//! serving, the newcomer is refused.
//!
//! A waiting connection's deadline (idle keep-alive, first byte of a new
//! connection) and the server's shutdown reach it the same way as a
//! newcomer's need: a sweeper thread looks at every waiting connection
//! each `TICK` and tells the ones past their deadline to close. Waiting
//! costs a request two atomic stores; a timer, a shutdown watch and a
//! shared registry entry per wait cost about 5% of a small hit's CPU
//! (BENCHMARKS.md). Deadlines are kept to within a `TICK`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

/// How often waiting connections are checked against their deadlines.
const TICK: Duration = Duration::from_millis(100);

/// A connection's phase (`State::phase`).
const BUSY: u8 = 0;
const WAITING: u8 = 1;
/// Told to close; final.
const SHED: u8 = 2;

/// Open connections and the ones that may be closed to make room.
pub struct Conns {
    cap: usize,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// Every open connection, oldest first.
    slots: Mutex<BTreeMap<u64, Arc<State>>>,
    /// Deadlines are milliseconds since this.
    epoch: Instant,
    /// The server's shutdown signal, known from the first connection on.
    shutdown: OnceLock<ShutdownWatch>,
}

/// What the sweeper and a newcomer need of one connection.
struct State {
    phase: AtomicU8,
    /// While `WAITING`: the deadline, in ms since `Conns::epoch`.
    until: AtomicU64,
    /// Notified when the connection must close.
    shed: Notify,
}

impl State {
    /// Moves a waiting connection to `SHED` and wakes it; false when it
    /// was not waiting.
    fn shed(&self) -> bool {
        let shed = self
            .phase
            .compare_exchange(WAITING, SHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if shed {
            // A permit is kept if the connection is not parked on it yet.
            self.shed.notify_one();
        }
        shed
    }
}

/// One admitted connection; its slot is freed when this is dropped.
pub struct Slot {
    conns: Arc<Conns>,
    id: u64,
    state: Arc<State>,
}

/// A connection marked as waiting; marked busy again when dropped.
pub struct Waiting<'a> {
    slot: &'a Slot,
}

impl Conns {
    /// A limiter for at most `cap` open connections (at least 1), with the
    /// thread that enforces waiting deadlines.
    pub fn new(cap: usize) -> std::io::Result<Arc<Self>> {
        let conns = Arc::new(Conns {
            cap: cap.max(1),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            slots: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
            shutdown: OnceLock::new(),
        });
        let weak = Arc::downgrade(&conns);
        std::thread::Builder::new()
            .name("feedcache-conns".into())
            .spawn(move || sweeper(weak))?;
        Ok(conns)
    }

    /// Lets the sweeper close waiting connections once `shutdown` fires.
    pub fn watch_shutdown(&self, shutdown: &ShutdownWatch) {
        if self.shutdown.get().is_none() {
            let _ = self.shutdown.set(shutdown.clone());
        }
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
        let mut slots = self.lock();
        // The victim's task closes it and frees its slot; this one takes
        // the place in the meantime (briefly cap + 1).
        if before >= self.cap && !slots.values().any(|s| s.shed()) {
            drop(slots);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(State {
            phase: AtomicU8::new(BUSY),
            until: AtomicU64::new(u64::MAX),
            shed: Notify::new(),
        });
        slots.insert(id, state.clone());
        drop(slots);
        Some(Slot {
            conns: self.clone(),
            id,
            state,
        })
    }

    /// Milliseconds since `epoch`.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Tells every waiting connection past its deadline at `now` (or all of
    /// them, once the server shuts down) to close.
    fn sweep(&self, now: u64) {
        let closing = self.shutdown.get().is_some_and(|w| *w.borrow());
        for s in self.lock().values() {
            if s.phase.load(Ordering::Acquire) == WAITING
                && (closing || now >= s.until.load(Ordering::Acquire))
            {
                s.shed();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<State>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sweeps every `TICK` until the connections are gone.
fn sweeper(conns: Weak<Conns>) {
    loop {
        std::thread::sleep(TICK);
        let Some(c) = conns.upgrade() else { return };
        c.sweep(c.now());
    }
}

impl Slot {
    /// Marks the connection as closable for a newcomer, and to be closed
    /// once `deadline` has passed (`None`: only for a newcomer or the
    /// shutdown), until the returned guard is dropped.
    pub fn waiting(&self, deadline: Option<Duration>) -> Waiting<'_> {
        let until = deadline.map_or(u64::MAX, |d| {
            let d = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            self.conns.now().saturating_add(d)
        });
        self.state.until.store(until, Ordering::Release);
        // A connection already shed stays so: its permit ends the wait.
        let _ =
            self.state
                .phase
                .compare_exchange(BUSY, WAITING, Ordering::AcqRel, Ordering::Acquire);
        Waiting { slot: self }
    }
}

impl Waiting<'_> {
    /// Resolves when this connection must close.
    pub async fn shed(&self) {
        self.slot.state.shed.notified().await
    }
}

impl Slot {
    /// `io`, waited for as `waiting(deadline)` says; `None` when the
    /// connection must close first (deadline, newcomer, shutdown).
    pub async fn wait_for<T>(
        &self,
        deadline: Option<Duration>,
        io: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let waiting = self.waiting(deadline);
        tokio::select! {
            biased;
            r = io => Some(r),
            _ = waiting.shed() => None,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let _ = self.slot.state.phase.compare_exchange(
            WAITING,
            BUSY,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
        self.conns.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Option<Duration> = Some(Duration::from_secs(3600));

    /// Whether the connection has been told to close: a shed stores its
    /// permit at once, so one poll answers (no waiting on a timer).
    async fn is_shed(w: &Waiting<'_>) -> bool {
        futures_util::FutureExt::now_or_never(w.shed()).is_some()
    }

    #[tokio::test]
    async fn over_the_cap_the_oldest_waiting_connection_gives_way() {
        let conns = Conns::new(2).unwrap();
        let a = conns.admit().unwrap();
        let b = conns.admit().unwrap();
        // Both busy: a third is refused.
        assert!(conns.admit().is_none());
        assert_eq!(conns.open(), 2);
        let wa = a.waiting(LONG);
        let wb = b.waiting(LONG);
        // Now the oldest waiting one (a) is told to close.
        let c = conns.admit().unwrap();
        tokio::time::timeout(Duration::from_secs(5), wa.shed())
            .await
            .unwrap();
        drop(wa);
        drop(a);
        assert_eq!(conns.open(), 2);
        // b still waits and is next in line; c is busy.
        let d = conns.admit().unwrap();
        tokio::time::timeout(Duration::from_secs(5), wb.shed())
            .await
            .unwrap();
        drop(wb);
        drop((b, c, d));
        assert_eq!(conns.open(), 0);
    }

    #[tokio::test]
    async fn wait_for_gives_the_io_unless_the_connection_must_close() {
        let conns = Conns::new(1).unwrap();
        let a = conns.admit().unwrap();
        let five = Duration::from_secs(5);
        // Ready I/O is returned, and the slot is busy again afterwards.
        let got = tokio::time::timeout(five, a.wait_for(LONG, async { 7 })).await;
        assert_eq!(got.unwrap(), Some(7));
        assert!(conns.admit().is_none(), "busy after the wait");
        // I/O that never ends gives way to a newcomer over the cap.
        let waited = a.wait_for(LONG, std::future::pending::<()>());
        let newcomer = async {
            tokio::task::yield_now().await;
            conns.admit()
        };
        let (got, b) = tokio::time::timeout(five, async { tokio::join!(waited, newcomer) })
            .await
            .unwrap();
        assert_eq!(got, None);
        assert!(b.is_some(), "the newcomer got in");
    }

    #[tokio::test]
    async fn a_connection_waiting_past_its_deadline_is_told_to_close() {
        let conns = Conns::new(8).unwrap();
        let (a, b, c) = (
            conns.admit().unwrap(),
            conns.admit().unwrap(),
            conns.admit().unwrap(),
        );
        let now = conns.now();
        let wa = a.waiting(Some(Duration::from_secs(1000)));
        let wb = b.waiting(Some(Duration::from_secs(2000)));
        let wc = c.waiting(None);
        // (sweep time in s after `now`, whether a, b and c are shed by
        // then); a second either side of each deadline, as `waiting` read
        // the clock a little after `now`.
        let steps = [
            (999, [false, false, false]),
            (1001, [true, false, false]),
            (1999, [true, false, false]),
            (2001, [true, true, false]),
            (1_000_000, [true, true, false]),
        ];
        let mut seen = [false; 3];
        for (secs, want) in steps {
            conns.sweep(now + secs * 1000);
            for (i, w) in [&wa, &wb, &wc].into_iter().enumerate() {
                seen[i] |= is_shed(w).await;
            }
            assert_eq!(seen, want, "at {secs} s");
        }
    }

    #[tokio::test]
    async fn a_busy_connection_is_never_told_to_close() {
        let conns = Conns::new(1).unwrap();
        let a = conns.admit().unwrap();
        let w = a.waiting(LONG);
        drop(w);
        conns.sweep(u64::MAX);
        // Past its deadline but busy: neither the sweep nor a newcomer sheds it.
        assert!(conns.admit().is_none());
        let w = a.waiting(LONG);
        assert!(!is_shed(&w).await);
    }

    #[tokio::test]
    async fn shed_is_final() {
        let conns = Conns::new(1).unwrap();
        let a = conns.admit().unwrap();
        let w = a.waiting(Some(Duration::ZERO));
        conns.sweep(u64::MAX);
        // The request came in anyway; the next wait ends at once.
        drop(w);
        let w = a.waiting(LONG);
        assert!(is_shed(&w).await);
    }

    #[tokio::test]
    async fn on_shutdown_every_waiting_connection_is_told_to_close() {
        let conns = Conns::new(4).unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        conns.watch_shutdown(&rx);
        let (a, b) = (conns.admit().unwrap(), conns.admit().unwrap());
        let wa = a.waiting(LONG);
        conns.sweep(conns.now());
        assert!(!is_shed(&wa).await);
        tx.send_replace(true);
        let wb = b.waiting(None);
        conns.sweep(conns.now());
        assert!(is_shed(&wa).await);
        assert!(is_shed(&wb).await);
    }
}
