//! The owner's side of a peer's miss: `/_cluster/fill?entry=&url=` (cluster
//! secret required, see `auth.rs`). The owner serves the key from its tiers
//! or fills it once, however many nodes ask, and streams it to each; it
//! never forwards the request again, so differing peer lists cannot loop.

use url::Url;

use crate::app::{App, Reply};
use crate::error::AppError;
use crate::keys::CacheKey;

impl App {
    pub(crate) async fn cluster_fill(&self, key: &str, url: &Url) -> Result<Reply, AppError> {
        // A peer makes this node fetch only from this node's own upstreams.
        if !self.knows_origin(url) {
            return Err(AppError::Forbidden);
        }
        let key = CacheKey::from(key.to_owned());
        if let Some(reply) = self.cached_blob(&key).await? {
            return Ok(reply);
        }
        self.fill_reply_from(&key, url.clone(), None, false).await
    }
}
