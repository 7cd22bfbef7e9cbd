//! The shared second tier on an S3-compatible bucket (`[cluster.store]`),
//! through the `object_store` crate. Objects are whole cache entry files
//! under `{prefix}entries/{name}` (the checks are the cache's, see
//! `cache/shared.rs`). Uploads leave from a bounded queue on a thread of
//! their own, with retries; a bucket that is down, slow or full costs a
//! request at most `timeout` and is then left alone for a while, so the
//! upstream answers instead.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use tokio::sync::mpsc;

use futures_util::StreamExt;

use crate::cache::{SharedObject, SharedTier};
use crate::config::StoreConfig;

/// After a failed request, the bucket is skipped for this long.
const BACKOFF_MS: u64 = 10_000;
/// Uploads tried this many times before the fill is given up on.
const UPLOAD_TRIES: u32 = 3;
/// Entries larger than this are uploaded in parts of this size.
const PART: usize = 16 * 1024 * 1024;

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cluster.store: {0}")]
    Setup(String),
}

/// The bucket and the upload queue.
pub struct Store {
    bucket: Arc<dyn ObjectStore>,
    prefix: String,
    timeout: Duration,
    queue: mpsc::Sender<(String, PathBuf)>,
    /// Until when (ms since the epoch) the bucket is left alone.
    down_until: Arc<AtomicU64>,
    /// Entries offered and not yet uploaded (or given up on).
    backlog: Arc<AtomicU64>,
}

impl Store {
    /// Connects (lazily: nothing is sent yet) and starts the uploader.
    pub fn start(conf: &StoreConfig) -> Result<Arc<Store>, StoreError> {
        let setup = |e: &dyn std::fmt::Display| StoreError::Setup(e.to_string());
        // object_store builds its own HTTP client, which takes the
        // process-wide rustls provider: ring, as everywhere else here (an
        // `Err` means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (id, secret) = conf.credentials().map_err(|e| setup(&e))?;
        let options = ClientOptions::new()
            .with_timeout(conf.timeout)
            .with_connect_timeout(conf.timeout.min(Duration::from_secs(5)))
            .with_allow_http(true);
        // Our own back-off stands in for the client's retries on reads;
        // uploads retry in `upload` below.
        let retry = RetryConfig {
            max_retries: 0,
            retry_timeout: conf.timeout,
            ..RetryConfig::default()
        };
        let mut b = AmazonS3Builder::new()
            .with_region(&conf.region)
            .with_bucket_name(&conf.bucket)
            .with_access_key_id(id.expose())
            .with_secret_access_key(secret.expose())
            .with_virtual_hosted_style_request(!conf.path_style)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(e) = &conf.endpoint {
            b = b.with_endpoint(e.as_str().trim_end_matches('/'));
        }
        let bucket: Arc<dyn ObjectStore> = Arc::new(b.build().map_err(|e| setup(&e))?);
        let (queue, rx) = mpsc::channel(conf.upload_queue);
        let store = Arc::new(Store {
            bucket,
            prefix: conf.prefix.clone(),
            timeout: conf.timeout,
            queue,
            down_until: Arc::default(),
            backlog: Arc::default(),
        });
        let uploader = store.clone();
        std::thread::Builder::new()
            .name("feedcache-upload".into())
            .spawn(move || uploader.run_uploads(rx))
            .map_err(|e| setup(&e))?;
        Ok(store)
    }

    /// Entries waiting for upload.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Whether the bucket answered its last request (or has not been asked).
    pub fn reachable(&self) -> bool {
        self.down_until.load(Ordering::Relaxed) <= now_ms()
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}entries/{name}", self.prefix))
    }

    fn failed(&self, op: &'static str, name: &str, e: &dyn std::fmt::Display) {
        tracing::warn!(op, object = name, error = %e, "shared bucket request failed; using the upstream meanwhile");
        crate::metrics::get().store(op, "error", 0);
        self.down_until
            .store(now_ms() + BACKOFF_MS, Ordering::Relaxed);
    }

    /// The uploader: one entry at a time, on a runtime of its own, so a
    /// slow bucket never takes a worker of the proxy.
    fn run_uploads(self: Arc<Self>, mut rx: mpsc::Receiver<(String, PathBuf)>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the upload runtime; fills are not shared");
                return;
            }
        };
        rt.block_on(async {
            while let Some((name, path)) = rx.recv().await {
                self.upload(&name, &path).await;
                self.backlog.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    async fn upload(&self, name: &str, path: &std::path::Path) {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=UPLOAD_TRIES {
            match self.put(name, path).await {
                Ok(n) => {
                    crate::metrics::get().store("put", "ok", n);
                    return;
                }
                // The entry was evicted or replaced meanwhile: nothing to share.
                Err(PutError::Gone) => return,
                Err(PutError::Bucket(e)) => {
                    self.failed("put", name, &e);
                    if attempt < UPLOAD_TRIES {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        tracing::warn!(object = name, "upload given up after {UPLOAD_TRIES} tries");
    }

    async fn put(&self, name: &str, path: &std::path::Path) -> Result<u64, PutError> {
        let size = match tokio::fs::metadata(path).await {
            Ok(m) => m.len(),
            Err(_) => return Err(PutError::Gone),
        };
        let location = self.path(name);
        if size <= PART as u64 {
            let body = tokio::fs::read(path).await.map_err(|_| PutError::Gone)?;
            let put = self.bucket.put(&location, Bytes::from(body).into());
            timed(self.timeout, put).await?;
            return Ok(size);
        }
        // Large entries go in parts, read from the file as they are sent.
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|_| PutError::Gone)?;
        let upload = timed(self.timeout, self.bucket.put_multipart(&location)).await?;
        let mut parts = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; PART];
        loop {
            let n = file.read(&mut buf).await.map_err(|_| PutError::Gone)?;
            if n == 0 {
                break;
            }
            timed(self.timeout, parts.wait_for_capacity(2)).await?;
            parts.write(&buf[..n]);
        }
        timed(self.timeout * 4, parts.finish()).await?;
        Ok(size)
    }
}

impl Store {
    /// An object's bytes, each chunk within `timeout` of the last: a bucket
    /// that stalls mid-object is a failed bucket.
    fn chunks(
        &self,
        name: &str,
        body: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    ) -> futures_util::stream::BoxStream<'static, Result<Bytes, String>> {
        let (limit, down, name) = (self.timeout, self.down_until.clone(), name.to_owned());
        let stream = futures_util::stream::unfold(Some(body), move |body| {
            let (down, name) = (down.clone(), name.clone());
            async move {
                let mut body = body?;
                let item = match tokio::time::timeout(limit, body.next()).await {
                    Ok(None) => return None,
                    Ok(Some(Ok(b))) => return Some((Ok(b), Some(body))),
                    Ok(Some(Err(e))) => e.to_string(),
                    Err(_) => format!("stalled for {limit:?}"),
                };
                tracing::warn!(object = %name, error = %item, "shared bucket read failed; using the upstream meanwhile");
                crate::metrics::get().store("get", "error", 0);
                down.store(now_ms() + BACKOFF_MS, Ordering::Relaxed);
                // One error, then the end: the reader falls back.
                Some((Err(item), None))
            }
        });
        Box::pin(stream)
    }
}

/// Why an upload did not happen.
enum PutError {
    /// The local entry is no longer there.
    Gone,
    Bucket(String),
}

/// Runs a bucket request under `limit`.
async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = object_store::Result<T>>,
) -> Result<T, PutError> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PutError::Bucket(e.to_string())),
        Err(_) => Err(PutError::Bucket(format!("no answer within {limit:?}"))),
    }
}

#[async_trait::async_trait]
impl SharedTier for Store {
    async fn fetch(&self, name: &str) -> Option<SharedObject> {
        if !self.reachable() {
            return None;
        }
        let location = self.path(name);
        let got = tokio::time::timeout(self.timeout, self.bucket.get(&location)).await;
        match got {
            Ok(Ok(r)) => {
                let size = r.meta.size;
                crate::metrics::get().store("get", "hit", size);
                Some(SharedObject {
                    size,
                    body: self.chunks(name, r.into_stream()),
                })
            }
            Ok(Err(object_store::Error::NotFound { .. })) => {
                crate::metrics::get().store("get", "miss", 0);
                None
            }
            Ok(Err(e)) => {
                self.failed("get", name, &e);
                None
            }
            Err(_) => {
                self.failed("get", name, &format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    fn offer(&self, name: &str, path: PathBuf) {
        self.backlog.fetch_add(1, Ordering::Relaxed);
        if self.queue.try_send((name.to_owned(), path)).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::get().store("put", "dropped", 0);
        }
    }

    fn rejected(&self, _name: &str, _why: &str) {
        crate::metrics::get().store("get", "rejected", 0);
    }

    fn status(&self) -> (bool, u64) {
        (self.reachable(), self.backlog())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
