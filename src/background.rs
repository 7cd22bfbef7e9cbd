//! Periodic background work (eviction, durability syncs) on threads of its
//! own, supervised: a round that panics is logged and the next round runs
//! anyway, so one bad file or bug never stops eviction for good (a panic
//! in the evictor once left a 2 MiB cache at 30 MB and growing).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Runs `round` every `every` on a named thread, for the life of the process.
pub fn every(
    name: &str,
    every: Duration,
    mut round: impl FnMut() + Send + 'static,
) -> std::io::Result<()> {
    let task = name.to_owned();
    std::thread::Builder::new()
        .name(format!("feedcache-{name}"))
        .spawn(move || loop {
            std::thread::sleep(every);
            if catch_unwind(AssertUnwindSafe(&mut round)).is_err() {
                crate::metrics::get().task_panicked();
                tracing::error!(task = %task, "background task panicked; it runs again next round");
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_round_is_followed_by_the_next() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut rounds = 0;
        every("test", Duration::from_millis(1), move || {
            rounds += 1;
            if rounds == 1 {
                panic!("first round fails");
            }
            let _ = tx.send(rounds);
        })
        .unwrap();
        let next = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(next, 2);
    }
}
