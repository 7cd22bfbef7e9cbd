//! Coalescing: at most one fill per key is in flight; later requests join it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::keys::CacheKey;

/// Handles of fills in flight, by key.
pub struct Inflight<H: Clone> {
    map: Mutex<HashMap<CacheKey, H>>,
}

impl<H: Clone> Default for Inflight<H> {
    fn default() -> Self {
        Inflight {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Whether the caller joined a running fill or must start one.
pub enum Joined<H> {
    Existing(H),
    /// The caller is the leader and must start the fill; others now join it.
    Started(H),
}

impl<H: Clone> Inflight<H> {
    /// Joins the fill for `key`, or registers the one `start` creates. `start`
    /// runs under the lock, so it must only build the handle (and spawn).
    pub fn join_or_start(&self, key: &CacheKey, start: impl FnOnce() -> H) -> Joined<H> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get(key) {
            crate::metrics::get().coalesced();
            return Joined::Existing(h.clone());
        }
        let h = start();
        map.insert(key.clone(), h.clone());
        Joined::Started(h)
    }

    /// Looks up a running fill.
    pub fn get(&self, key: &CacheKey) -> Option<H> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Called by the fill when its result is published in the cache.
    pub fn finish(&self, key: &CacheKey) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Fills in flight now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_caller_joins() {
        let f: Inflight<u32> = Inflight::default();
        let k = CacheKey::from("k".to_string());
        assert!(matches!(f.join_or_start(&k, || 1), Joined::Started(1)));
        assert!(matches!(f.join_or_start(&k, || 2), Joined::Existing(1)));
        f.finish(&k);
        assert!(f.is_empty());
        assert!(matches!(f.join_or_start(&k, || 3), Joined::Started(3)));
    }
}
