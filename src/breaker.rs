//! A circuit breaker per upstream host: after N consecutive failures the host
//! is left alone for a cooldown (requests fail fast while the cache keeps
//! serving), then one probe decides whether it is back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Breakers for every host, keyed by `scheme://host:port`.
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    hosts: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breakers {
            threshold: threshold.max(1),
            cooldown,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a request to `host` may go out now. While open, no; after the
    /// cooldown, exactly one request (the probe) until it reports back.
    pub fn admit(&self, host: &str, now: Instant) -> bool {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = hosts.get_mut(host) else {
            return true;
        };
        match s.open_until {
            None => true,
            Some(t) if now < t => false,
            Some(_) if s.probing => false,
            Some(_) => {
                s.probing = true;
                true
            }
        }
    }

    /// Whether `host` failed repeatedly and is being left alone.
    pub fn is_open(&self, host: &str) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.get(host).is_some_and(|s| s.open_until.is_some())
    }

    /// How long until `host` gets its probe (at least 1 s), for `Retry-After`.
    pub fn retry_after(&self, host: &str, now: Instant) -> Duration {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let left = hosts
            .get(host)
            .and_then(|s| s.open_until)
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        left.max(Duration::from_secs(1))
    }

    /// Records how a request that was admitted ended.
    pub fn record(&self, host: &str, ok: bool, now: Instant) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            hosts.remove(host);
            return;
        }
        let s = hosts.entry(host.to_owned()).or_default();
        s.failures = s.failures.saturating_add(1);
        if s.probing || s.failures >= self.threshold {
            if s.open_until.is_none() || s.probing {
                tracing::warn!(host, failures = s.failures, "upstream considered down");
            }
            s.open_until = Some(now + self.cooldown);
            s.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let b = Breakers::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.admit("h", t0));
            b.record("h", false, t0);
        }
        assert!(b.admit("h", t0), "still closed below the threshold");
        b.record("h", false, t0);
        assert!(!b.admit("h", t0), "open after 3 failures");
        assert!(b.admit("other", t0), "hosts are independent");
        let later = t0 + Duration::from_secs(11);
        assert!(b.admit("h", later), "one probe after the cooldown");
        assert!(!b.admit("h", later), "only one probe at a time");
        b.record("h", false, later);
        assert!(
            !b.admit("h", later + Duration::from_secs(1)),
            "failed probe reopens"
        );
        let much_later = later + Duration::from_secs(12);
        assert!(b.admit("h", much_later));
        b.record("h", true, much_later);
        assert!(
            b.admit("h", much_later) && b.admit("h", much_later),
            "closed again"
        );
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breakers::new(2, Duration::from_secs(10));
        let t = Instant::now();
        b.record("h", false, t);
        b.record("h", true, t);
        b.record("h", false, t);
        assert!(b.admit("h", t));
    }
}
