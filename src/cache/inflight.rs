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

    /// A guard that calls `finish(key)` when dropped: a fill task holds
    /// one, so a fill that panics or is cancelled never leaves its key
    /// registered (which would make every later request join a dead fill).
    pub fn finish_on_drop(&self, key: &CacheKey) -> FinishOnDrop<'_, H> {
        FinishOnDrop {
            inflight: self,
            key: key.clone(),
        }
    }

    /// Fills in flight now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// See `Inflight::finish_on_drop`.
pub struct FinishOnDrop<'a, H: Clone> {
    inflight: &'a Inflight<H>,
    key: CacheKey,
}

impl<H: Clone> Drop for FinishOnDrop<'_, H> {
    fn drop(&mut self) {
        self.inflight.finish(&self.key);
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

    #[tokio::test]
    async fn a_panicking_fill_does_not_leave_its_key_stuck() {
        let f: std::sync::Arc<Inflight<u32>> = std::sync::Arc::default();
        let k = CacheKey::from("k".to_string());
        assert!(matches!(f.join_or_start(&k, || 1), Joined::Started(1)));
        let (f2, k2) = (f.clone(), k.clone());
        let task = tokio::spawn(async move {
            let _done = f2.finish_on_drop(&k2);
            panic!("fill failed hard");
        });
        assert!(task.await.is_err());
        assert!(f.is_empty());
        assert!(matches!(f.join_or_start(&k, || 2), Joined::Started(2)));
    }
}
