//! Prometheus metrics: process-wide counters updated on the request path
//! (lock-light: labeled counters sit behind one short mutex), rendered in
//! the text exposition format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// A point-in-time value: name, help text, labels, value.
pub type Gauge<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], f64);

/// Upper bounds (seconds) of the upstream latency histogram.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Per-request counters, behind one lock so a request takes it once.
#[derive(Default)]
struct Requests {
    /// (route kind, cache status, tier) → requests.
    by_kind: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    /// HTTP status code → responses.
    by_status: BTreeMap<u16, u64>,
}

/// All metrics of the process.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<Requests>,
    bytes_served: AtomicU64,
    coalesced: AtomicU64,
    upstream_requests: AtomicU64,
    /// Error kind → upstream failures.
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    upstream_latency: Mutex<Histogram>,
    /// Connections refused because every slot was busy.
    connections_refused: AtomicU64,
    /// Request headers not complete within the header deadline.
    header_timeouts: AtomicU64,
    /// Writes to the cache disk that failed (full, read-only, ...).
    disk_write_failures: AtomicU64,
    /// Misses served from the upstream uncached while the disk was down.
    disk_bypassed: AtomicU64,
    /// Background task rounds that panicked (and were restarted).
    task_panics: AtomicU64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K, by: u64) {
    *map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += by;
}

impl Metrics {
    /// One finished request: route kind, `X-Cache` status, where the body
    /// came from (`memory`, `disk`, `upstream`, `package`, `-`), status, bytes.
    pub fn request(
        &self,
        route: &'static str,
        cache: &'static str,
        tier: &'static str,
        status: u16,
        bytes: u64,
    ) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.by_kind.entry((route, cache, tier)).or_default() += 1;
        *r.by_status.entry(status).or_default() += 1;
        drop(r);
        self.bytes_served.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Requests answered as hits, misses and stale hits so far.
    pub fn cache_counts(&self) -> (u64, u64, u64) {
        let mut out = (0, 0, 0);
        for ((_, cache, _), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_kind
            .iter()
        {
            match *cache {
                "HIT" | "REVALIDATED" => out.0 += n,
                "MISS" => out.1 += n,
                "STALE" => out.2 += n,
                _ => {}
            }
        }
        out
    }

    /// A connection was refused at the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A request header missed its deadline.
    pub fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A write to the cache disk failed.
    pub fn disk_write_failed(&self) {
        self.disk_write_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A miss was streamed from the upstream uncached (disk not writable).
    pub fn disk_bypassed(&self) {
        self.disk_bypassed.fetch_add(1, Ordering::Relaxed);
    }

    /// A background task round panicked.
    pub fn task_panicked(&self) {
        self.task_panics.fetch_add(1, Ordering::Relaxed);
    }

    /// A request joined a fetch already in flight instead of starting one.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    /// One upstream request and how long it took to its response headers.
    pub fn upstream(&self, elapsed: Duration, error: Option<&'static str>) {
        self.upstream_requests.fetch_add(1, Ordering::Relaxed);
        if let Some(kind) = error {
            bump(&self.upstream_errors, kind, 1);
        }
        let secs = elapsed.as_secs_f64();
        let mut h = self
            .upstream_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The text exposition format; `gauges` are point-in-time values
    /// (cache sizes) supplied by the caller.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP feedcache_requests_total Requests by route kind, cache status and body source.\n# TYPE feedcache_requests_total counter");
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, cache, tier), n) in &requests.by_kind {
            let _ = writeln!(out, "feedcache_requests_total{{route=\"{route}\",cache=\"{cache}\",tier=\"{tier}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP feedcache_responses_total Responses by status code.\n# TYPE feedcache_responses_total counter");
        for (status, n) in &requests.by_status {
            let _ = writeln!(out, "feedcache_responses_total{{status=\"{status}\"}} {n}");
        }
        drop(requests);
        let _ = writeln!(out, "# HELP feedcache_bytes_served_total Body bytes sent to clients.\n# TYPE feedcache_bytes_served_total counter\nfeedcache_bytes_served_total {}", self.bytes_served.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_coalesced_waiters_total Requests that joined a fetch already in flight.\n# TYPE feedcache_coalesced_waiters_total counter\nfeedcache_coalesced_waiters_total {}", self.coalesced.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_connections_refused_total Connections refused at the connection cap (every slot busy).\n# TYPE feedcache_connections_refused_total counter\nfeedcache_connections_refused_total {}", self.connections_refused.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_header_timeouts_total Request headers not complete within connections.header_timeout.\n# TYPE feedcache_header_timeouts_total counter\nfeedcache_header_timeouts_total {}", self.header_timeouts.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_disk_write_failures_total Writes to the cache disk that failed (full, read-only, ...).\n# TYPE feedcache_disk_write_failures_total counter\nfeedcache_disk_write_failures_total {}", self.disk_write_failures.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_disk_bypassed_total Misses served from the upstream uncached because the cache disk was not writable.\n# TYPE feedcache_disk_bypassed_total counter\nfeedcache_disk_bypassed_total {}", self.disk_bypassed.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_background_panics_total Background task rounds (eviction, sync) that panicked and were restarted.\n# TYPE feedcache_background_panics_total counter\nfeedcache_background_panics_total {}", self.task_panics.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_log_lines_dropped_total Log lines dropped because the log writer fell behind.\n# TYPE feedcache_log_lines_dropped_total counter\nfeedcache_log_lines_dropped_total {}", crate::logging::dropped_lines());
        let _ = writeln!(out, "# HELP feedcache_upstream_requests_total Requests sent upstream.\n# TYPE feedcache_upstream_requests_total counter\nfeedcache_upstream_requests_total {}", self.upstream_requests.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP feedcache_upstream_errors_total Upstream failures by kind.\n# TYPE feedcache_upstream_errors_total counter");
        for (kind, n) in self
            .upstream_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "feedcache_upstream_errors_total{{kind=\"{kind}\"}} {n}"
            );
        }
        {
            let h = self
                .upstream_latency
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "# HELP feedcache_upstream_seconds Time to upstream response headers.\n# TYPE feedcache_upstream_seconds histogram");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "feedcache_upstream_seconds_bucket{{le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(out, "feedcache_upstream_seconds_bucket{{le=\"+Inf\"}} {}\nfeedcache_upstream_seconds_sum {}\nfeedcache_upstream_seconds_count {}", h.count, h.sum, h.count);
        }
        let mut last = "";
        for (name, help, labels, value) in gauges {
            if *name != last {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                last = name;
            }
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.request("flat_file", "HIT", "memory", 200, 10);
        m.request("flat_file", "HIT", "memory", 200, 5);
        m.coalesced();
        m.upstream(Duration::from_millis(20), None);
        m.upstream(Duration::from_secs(3), Some("timeout"));
        let text = m.render(&[(
            "feedcache_cache_bytes",
            "Bytes cached.",
            &[("tier", "memory")],
            42.0,
        )]);
        for want in [
            "feedcache_requests_total{route=\"flat_file\",cache=\"HIT\",tier=\"memory\"} 2",
            "feedcache_bytes_served_total 15",
            "feedcache_coalesced_waiters_total 1",
            "feedcache_upstream_errors_total{kind=\"timeout\"} 1",
            "feedcache_upstream_seconds_bucket{le=\"0.025\"} 1",
            "feedcache_upstream_seconds_bucket{le=\"+Inf\"} 2",
            "feedcache_cache_bytes{tier=\"memory\"} 42",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
