//! Streaming fills of package content: one upstream download per key, written
//! to a temp file that any number of clients read while it grows.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;
use url::Url;

use super::blob_meta::blob_meta;
use super::blocks::Blocks;
use super::disk::TempEntry;
use super::entry::{encode_header, MemEntry, Meta, Seal};
use super::follow::{Fill, FillState};
use super::load::{blocking, map_file, DiskEntry, MAP_MAX};
use super::{Cache, CacheError, Joined};
use crate::error::AppError;
use crate::extract::Package;
use crate::keys::CacheKey;
use crate::upstream::{classify, Request, Upstream, UpstreamError};

/// A block not yet full is written anyway once the upstream has sent
/// nothing more for this long, so a client streaming a slow download never
/// waits long for bytes that have arrived.
const STALL_FLUSH: Duration = Duration::from_millis(500);
/// Bodies up to this size (with a known length) are fetched whole into
/// memory instead of streamed through a file: cheaper, and the delay before
/// the first byte is a fraction of a millisecond on any sane upstream link.
const SMALL_FILL: u64 = 256 * 1024;
/// A check of a complete body run before it is published; an `Err` fails
/// the fill and nothing is cached. It carries the configured limits.
pub type BodyCheck = crate::extract::PackageCheck;

impl Cache {
    /// Joins the fill of `key` or starts one from `url` in a task that outlives
    /// the requesting client. Returns whether this call started it. With
    /// `forward`, a key another node owns is asked of that node first (a
    /// fill for a peer's request never forwards again).
    pub fn fill_blob(
        self: &Arc<Self>,
        key: &CacheKey,
        url: Url,
        upstream: Upstream,
        check: Option<BodyCheck>,
        forward: bool,
    ) -> (Arc<Fill>, bool) {
        let joined = self.blobs.join_or_start(key, || {
            let (tx, rx) = watch::channel(FillState::Waiting);
            let cache = self.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let done = cache.blobs.finish_on_drop(&key);
                let result =
                    (cache.run_blob_fill(&key, &url, &upstream, check, forward, &tx)).await;
                // Unregistered before a failure is published: a request that
                // has seen it must start a new fill, never join this one.
                drop(done);
                if let Err(e) = result {
                    e.log_for(&key, "fill failed");
                    tx.send_replace(FillState::Failed(e));
                }
            });
            Arc::new(Fill { state: rx })
        });
        match joined {
            Joined::Existing(f) => (f, false),
            Joined::Started(f) => (f, true),
        }
    }

    async fn run_blob_fill(
        &self,
        key: &CacheKey,
        url: &Url,
        upstream: &Upstream,
        check: Option<BodyCheck>,
        forward: bool,
        tx: &watch::Sender<FillState>,
    ) -> Result<(), AppError> {
        // A fill that finished between the caller's disk miss and registering
        // this one has already published the entry: serve that, fetch nothing.
        if let Some(entry) = self.disk.get(key).await? {
            complete(tx, entry);
            return Ok(());
        }
        // Nothing to write to: the caller streams from the upstream instead.
        if !self.disk.writable.ok() {
            return Err(CacheError::NotWritable.into());
        }
        // The key's owner fills it for the cluster; else another node may
        // have put it in the shared bucket; else the upstream.
        let (resp, from_peer) = match self.ask_owner(key, url, upstream, forward).await {
            Some(resp) => (resp, true),
            None => {
                if let Some(entry) = self.fetch_shared(key).await? {
                    complete(tx, entry);
                    return Ok(());
                }
                (upstream.get(url, &Request::default()).await?, false)
            }
        };
        if !resp.status().is_success() {
            let e = AppError::from_upstream_response(url, resp).await;
            if e.is_not_found() {
                self.negative.insert(key.clone(), false);
            }
            return Err(e);
        }
        let expected = resp.content_length();
        if expected.is_some_and(|n| n > self.max_body) {
            return Err(AppError::BadUpstream(format!(
                "{} announced a body above cache.max_package_size",
                crate::upstream::host_of(url)
            )));
        }
        // A body without a length ends when the connection does, so a cut
        // connection looks complete. Such a body is kept only if it proves
        // whole: packages must read as a zip; anything else is passed
        // through to the clients waiting for it, never stored.
        let check = match (expected, check) {
            (None, None) if is_package(url) => Some(self.package_check),
            (_, c) => c,
        };
        let cacheable = expected.is_some() || check.is_some();
        let meta = Arc::new(blob_meta(resp.headers(), url, expected));
        if let Some(n) = expected.filter(|n| *n <= SMALL_FILL && self.memory.admits(*n)) {
            let fill = self.small_fill(key, url, resp, meta, n, check, tx);
            return fill.await.map(|kept| {
                if from_peer {
                    crate::metrics::get().peer_bytes(n);
                } else if kept {
                    self.share(key);
                }
            });
        }
        let temp = self.disk.temp(key)?;
        let header = encode_header(&meta, key.as_str());
        let offset = header.len() as u64;
        let file = temp.shared.clone();
        // With a known length the file is sized up front and mapped, so
        // readers take slices of the mapping as blocks land.
        let (temp, map) = blocking(move || {
            temp.write_at(&header, 0)?;
            let map = match expected {
                Some(n) if offset + n <= MAP_MAX && temp.presize(offset + n) => {
                    map_file(&temp.shared, offset + n)
                }
                _ => None,
            };
            Ok((
                temp,
                map.map(|m| m.slice(usize::try_from(offset).unwrap_or(0)..)),
            ))
        })
        .await
        .inspect_err(|e| self.disk.writable.failed(e))?;
        tx.send_replace(FillState::Streaming {
            file: file.clone(),
            meta: meta.clone(),
            offset,
            expected,
            written: 0,
            map: map.clone(),
        });

        // Small bodies are also kept for the memory tier: as the mapping
        // when there is one (below), else copied as they come.
        let keep = map.is_none() && expected.is_none_or(|n| self.memory.admits(n));
        let mut kept = keep.then(BytesMut::new);
        // Readers see progress block by block (`blocks.rs`).
        let mut blocks = Blocks::new(offset);
        let mut written = 0u64;
        let mut crc = crc32fast::Hasher::new();
        let mut body = resp.bytes_stream();
        let temp = Arc::new(temp);
        loop {
            let next = if blocks.pending() == 0 {
                Some(body.next().await)
            } else {
                tokio::time::timeout(STALL_FLUSH, body.next()).await.ok()
            };
            let end = matches!(next, Some(None));
            // A stalled upstream (`next` is `None`) or the end: write all.
            let flush_all = end || next.is_none();
            if let Some(Some(chunk)) = next {
                let chunk = chunk.map_err(|e| classify(url, &e))?;
                if let Some(k) = kept.as_mut() {
                    k.extend_from_slice(&chunk);
                    if !self.memory.admits(k.len() as u64) {
                        kept = None;
                    }
                }
                crc.update(&chunk);
                blocks.push(&chunk);
                if written + blocks.pending() as u64 > self.max_body {
                    return Err(AppError::BadUpstream(format!(
                        "body from {} exceeds cache.max_package_size",
                        crate::upstream::host_of(url)
                    )));
                }
            }
            while let Some((at, block)) =
                blocks
                    .ready()
                    .or_else(|| if flush_all { blocks.rest() } else { None })
            {
                written += self.write_block(&temp, at, block).await?;
                tx.send_modify(|s| {
                    if let FillState::Streaming { written: w, .. } = s {
                        *w = written;
                    }
                });
            }
            if end {
                break;
            }
        }
        if let Some(exp) = expected {
            if exp != written {
                return Err(UpstreamError::Truncated {
                    expected: exp,
                    got: written,
                }
                .into());
            }
        }
        let pkg = Package::File {
            file: file.clone(),
            offset,
            len: written,
        };
        run_check(check, pkg).await?;
        if from_peer {
            crate::metrics::get().peer_bytes(written);
        }
        tx.send_replace(FillState::Complete {
            file: file.clone(),
            meta: meta.clone(),
            offset,
            len: written,
            map: map.clone(),
        });

        if !cacheable {
            tracing::debug!(key = %key, "body without a length passed through uncached");
            return Ok(());
        }
        // Clients already have every byte; a failure to publish only means the
        // next request fetches again, so it is logged, not reported as failed.
        let Ok(temp) = Arc::try_unwrap(temp) else {
            tracing::error!(key = %key, "temp file still shared; not cached");
            return Ok(());
        };
        let seal = Seal {
            len: written,
            crc: crc.finalize(),
        };
        if let Err(e) = self.disk.commit(key, temp, seal).await {
            tracing::error!(key = %key, error = %e, "cannot publish cache entry");
            return Ok(());
        }
        // What the owner sent, the owner shares.
        if !from_peer {
            self.share(key);
        }
        // A mapped body (its length was known and it was checked to be
        // whole) is the published file's: the memory tier holds that
        // mapping, with the file for `sendfile` (`held.rs`), and no heap.
        let entry = match (map, kept) {
            (Some(m), _) if self.memory.admits(written) => MemEntry {
                backing: self.held.back(&file, offset, written, meta.templated),
                meta,
                body: m,
            },
            (_, Some(k)) => MemEntry {
                meta,
                body: k.freeze(),
                backing: None,
            },
            _ => {
                // Disk only; an older memory entry of the key must not
                // shadow the new file.
                self.memory.remove_if_held(key).await;
                return Ok(());
            }
        };
        self.memory.insert(key.clone(), Arc::new(entry)).await;
        Ok(())
    }
}

impl Cache {
    /// Writes one block of a streaming fill at `at` in its temp file, off the
    /// worker thread; returns its length.
    async fn write_block(
        &self,
        temp: &Arc<TempEntry>,
        at: u64,
        block: Bytes,
    ) -> Result<u64, CacheError> {
        let n = block.len() as u64;
        let t = temp.clone();
        blocking(move || t.write_at(&block, at))
            .await
            .inspect_err(|e| self.disk.writable.failed(e))?;
        Ok(n)
    }
}

/// Publishes an entry found complete on disk to the fill's readers.
fn complete(tx: &watch::Sender<FillState>, e: DiskEntry) {
    tx.send_replace(FillState::Complete {
        file: e.file,
        meta: e.meta,
        offset: e.offset,
        len: e.len,
        map: e.map,
    });
}

impl Cache {
    /// A body small enough for the memory tier, announced with its length:
    /// read whole, handed to waiting clients from memory, then written to
    /// disk in one step. Streaming it through a file would cost more hops
    /// than the few milliseconds of buffering it saves. `true` when the
    /// entry is on disk.
    #[allow(clippy::too_many_arguments)]
    async fn small_fill(
        &self,
        key: &CacheKey,
        url: &Url,
        resp: crate::upstream::Response,
        meta: Arc<Meta>,
        expected: u64,
        check: Option<BodyCheck>,
        tx: &watch::Sender<FillState>,
    ) -> Result<bool, AppError> {
        let body = read_whole(resp, url, expected).await?;
        run_check(check, Package::Bytes(body.clone())).await?;
        tx.send_replace(FillState::Memory {
            meta: meta.clone(),
            body: body.clone(),
        });
        // The entry goes to disk only: the memory tier takes it when it is
        // read again (a disk hit promotes the mapped entry). A package
        // fetched once then costs no heap, and this buffer is reused by the
        // next miss instead of the heap growing by every fill (fresh pages
        // were a tenth of a cold miss's CPU, BENCHMARKS.md).
        if let Err(e) = self.disk.put(key, &meta, body.clone()).await {
            // Clients are served; without the disk, memory still holds it.
            tracing::error!(key = %key, error = %e, "cannot publish cache entry");
            // A copy of its own: the body may be a slice of the upstream
            // client's read buffer, which the tier would pin and not weigh.
            let body = Bytes::copy_from_slice(&body);
            let entry = Arc::new(MemEntry {
                meta,
                body,
                backing: None,
            });
            self.memory.insert(key.clone(), entry).await;
            return Ok(false);
        }
        Ok(true)
    }
}

/// Reads a body announced as `expected` bytes whole. A small body usually
/// arrives in one chunk (a slice of the client's read buffer), which is
/// kept as it is: copying it into a buffer of our own was ~4% of a cold
/// miss's user time (the copy and the allocation, BENCHMARKS.md).
async fn read_whole(
    resp: crate::upstream::Response,
    url: &Url,
    expected: u64,
) -> Result<Bytes, AppError> {
    let mut body = resp.bytes_stream();
    let mut whole = match body.next().await {
        Some(chunk) => chunk.map_err(|e| classify(url, &e))?,
        None => Bytes::new(),
    };
    if (whole.len() as u64) < expected {
        // In pieces: gathered until the announced length is reached or
        // passed (a body of another length is refused below).
        let mut buf = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
        buf.extend_from_slice(&whole);
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| classify(url, &e))?);
            if buf.len() as u64 > expected {
                break;
            }
        }
        whole = buf.freeze();
    }
    if whole.len() as u64 != expected {
        return Err(UpstreamError::Truncated {
            expected,
            got: whole.len() as u64,
        }
        .into());
    }
    Ok(whole)
}

/// Runs a body check off the async workers; a refusal is a corrupt package
/// or one over the extraction limits.
async fn run_check(check: Option<BodyCheck>, pkg: Package) -> Result<(), AppError> {
    let Some(check) = check else {
        return Ok(());
    };
    blocking(move || Ok(check.run(pkg)))
        .await?
        .map_err(AppError::from)
}

/// Whether the URL names a zip package (`.nupkg`, `.snupkg`, `.upack`).
fn is_package(url: &Url) -> bool {
    let path = url.path().to_ascii_lowercase();
    [".nupkg", ".snupkg", ".upack"]
        .iter()
        .any(|ext| path.ends_with(ext))
}
