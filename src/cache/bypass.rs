//! Misses served straight from the upstream, not stored: what a client gets
//! while the cache disk takes no writes (`writable.rs`). Each such request
//! makes its own upstream fetch; nothing is coalesced or kept.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use url::Url;

use super::blob_meta::blob_meta;
use super::entry::Meta;
use super::Cache;
use crate::error::AppError;
use crate::upstream::{classify, Request, Upstream};

/// A body arriving from the upstream, for one client.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, AppError>> + Send>>;

/// An uncached response: its meta, the announced length, the body.
pub struct Passthrough {
    pub meta: Arc<Meta>,
    pub len: Option<u64>,
    pub body: BodyStream,
}

impl Cache {
    /// Fetches `url` for one client without storing it.
    pub async fn pass_through(
        &self,
        url: &Url,
        upstream: &Upstream,
    ) -> Result<Passthrough, AppError> {
        let resp = upstream.get(url, &Request::default()).await?;
        if !resp.status().is_success() {
            return Err(AppError::from_upstream_response(url, resp).await);
        }
        crate::metrics::get().disk_bypassed();
        let len = resp.content_length();
        let meta = Arc::new(blob_meta(resp.headers(), url, len));
        let from = url.clone();
        let body = resp
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| AppError::from(classify(&from, &e))))
            .boxed();
        Ok(Passthrough { meta, len, body })
    }
}
