//! The admin API: purge by package id, id + version, or feed, cache
//! statistics, and offline mode. Reachable only with the admin key
//! (`[admin]`).

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

    /// `/admin/offline`: reports offline mode, or switches it (`Some`).
    pub(crate) fn offline(&self, set: Option<bool>) -> Reply {
        if let Some(on) = set {
            self.upstream.set_offline(on);
            tracing::warn!(offline = on, "offline mode switched through the admin API");
        }
        json_reply(serde_json::json!({ "offline": self.upstream.is_offline() }))
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
            "offline": self.upstream.is_offline(),
        }))
    }
}

fn json_reply(v: serde_json::Value) -> Reply {
    crate::app::generated(Bytes::from(v.to_string()), "application/json")
}
