//! What the process reports about itself: `/health` (with the shared bucket
//! and the peers when there are any) and `/metrics` (counters plus the size
//! of each cache structure at the time of the scrape).

use bytes::Bytes;

use crate::app::{generated, App, Reply};

impl App {
    /// `/health`: `ok` while the process serves, plus the shared bucket's
    /// state when there is one (a bucket that is down fails no request, so
    /// it does not fail the check either).
    pub(crate) fn health(&self) -> Bytes {
        if self.cache.shared.is_none() && self.cache.owners.is_none() {
            return Bytes::from_static(b"ok\n");
        }
        let mut out = String::from("ok\n");
        if let Some(s) = &self.cache.shared {
            let (up, backlog) = s.status();
            let state = if up { "reachable" } else { "failing" };
            out.push_str(&format!("store: {state}, {backlog} uploads waiting\n"));
        }
        // A peer is "down" once its breaker opened (repeated failures).
        for peer in self.cache.owners.iter().flat_map(|o| o.others()) {
            let state = if self.upstream.is_down(&peer) {
                "down"
            } else {
                "up"
            };
            out.push_str(&format!("peer {peer}: {state}\n"));
        }
        Bytes::from(out)
    }

    /// `/metrics`: counters plus the current size of each cache structure.
    pub(crate) async fn metrics(&self) -> Reply {
        let mem_bytes = self.cache.memory.weighted_size().await as f64;
        let (disk_bytes, disk_entries) = self.cache.disk.index.totals();
        use crate::metrics::GaugeKind::{CacheBytes, CacheEntries, FillsInFlight, UploadBacklog};
        let backlog = self.cache.shared.as_ref().map_or(0, |s| s.status().1);
        let gauges: &[crate::metrics::Gauge<'_>] = &[
            (CacheBytes, "memory", mem_bytes),
            (CacheBytes, "disk", disk_bytes as f64),
            (
                CacheEntries,
                "memory",
                self.cache.memory.entry_count() as f64,
            ),
            (CacheEntries, "disk", disk_entries as f64),
            (FillsInFlight, "", self.cache.blobs.len() as f64),
            (UploadBacklog, "", backlog as f64),
        ];
        let body = Bytes::from(crate::metrics::get().render(gauges));
        generated(body, "text/plain; version=0.0.4; charset=utf-8")
    }
}
