//! The admin API: purge by package id, id + version, or feed, and cache
//! statistics. Reachable only with the admin key (`[admin]`).

use bytes::Bytes;

use crate::app::{App, Reply};
use crate::error::AppError;
use crate::keys::{key_matches, PurgeSpec};

impl App {
    /// `/admin/purge`: removes matching entries from both tiers.
    pub(crate) async fn purge(&self, spec: &PurgeSpec) -> Result<Reply, AppError> {
        let spec2 = spec.clone();
        let keys = self.cache.purge(move |k| key_matches(k, &spec2)).await?;
        tracing::info!(?spec, purged = keys.len(), "purge");
        Ok(json_reply(serde_json::json!({ "purged": keys.len() })))
    }

    /// `/admin/stats`: entries and bytes per tier, fills in flight, hit ratio.
    pub(crate) async fn stats(&self) -> Reply {
        let (disk_bytes, disk_entries) = self.cache.disk.index.totals();
        let (hits, misses, stale) = crate::metrics::get().cache_counts();
        let served = hits + misses + stale;
        let ratio = if served == 0 {
            0.0
        } else {
            (hits + stale) as f64 / served as f64
        };
        json_reply(serde_json::json!({
            "memory": {
                "entries": self.cache.memory.entry_count(),
                "bytes": self.cache.memory.weighted_size().await,
                "capacity": self.config.cache.memory_size.as_u64(),
            },
            "disk": {
                "entries": disk_entries,
                "bytes": disk_bytes,
                "capacity": self.config.cache.disk_size.as_u64(),
                "index_complete": self.cache.disk.index.ready(),
            },
            "fills_in_flight": self.cache.blobs.len(),
            "negative_entries": self.cache.negative.entry_count(),
            "requests": { "hits": hits, "misses": misses, "stale": stale },
            "hit_ratio": ratio,
        }))
    }
}

fn json_reply(v: serde_json::Value) -> Reply {
    crate::app::generated(Bytes::from(v.to_string()), "application/json")
}
