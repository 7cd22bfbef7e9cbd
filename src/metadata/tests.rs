//! Time-based behaviour (TTL, stale-while-revalidate, expiry past
//! `max_stale`) with time moved by hand instead of slept through.

use super::*;
use crate::cache::{DiskTier, MemoryTier};
use crate::clock::ManualClock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-document upstream: an ETag derived from the document, 304 to a
/// matching If-None-Match, 503 while `down`.
#[derive(Default)]
struct Fake {
    doc: Mutex<String>,
    down: AtomicBool,
    hits: AtomicUsize,
    revalidations: AtomicUsize,
}

impl Fake {
    fn etag(&self) -> String {
        format!(
            "\"{}\"",
            etag_of(self.doc.lock().unwrap().as_bytes()).trim_matches('"')
        )
    }

    fn answer(&self, request: &str) -> String {
        self.hits.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return "HTTP/1.1 503 Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into();
        }
        let etag = self.etag();
        if request.contains(&format!("if-none-match: {}", etag.to_ascii_lowercase())) {
            self.revalidations.fetch_add(1, Ordering::SeqCst);
            return format!(
                "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
            );
        }
        let body = self.doc.lock().unwrap().clone();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }
}

async fn serve(fake: Arc<Fake>) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!(
        "http://{}/doc.json",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let fake = fake.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let _ = s.write_all(fake.answer(&text).as_bytes()).await;
            });
        }
    });
    url
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap()
}

struct Setup {
    store: Arc<MetadataStore>,
    clock: Arc<ManualClock>,
    fake: Arc<Fake>,
    url: Url,
    key: CacheKey,
    _dir: tempfile::TempDir,
}

/// A store with a 60 s TTL and 600 s of allowed staleness.
async fn setup(doc: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(Cache::new(
        MemoryTier::new(1 << 20, 1 << 20),
        DiskTier::open(dir.path()).unwrap(),
        Duration::from_secs(60),
    ));
    // A 503 must not open the breaker for the rest of the test.
    let cfg = crate::config::UpstreamConfig {
        breaker_failures: 1000,
        ..Default::default()
    };
    let up = Upstream::new(&cfg, None).unwrap();
    let clock = Arc::new(ManualClock::at(1_000_000));
    let policy = Policy {
        ttl: Duration::from_secs(60),
        max_stale: Duration::from_secs(600),
        max_size: 1 << 20,
    };
    let store = MetadataStore::with_clock(cache, up, policy, clock.clone());
    let fake = Arc::new(Fake::default());
    *fake.doc.lock().unwrap() = doc.into();
    let url = serve(fake.clone()).await;
    let key = CacheKey::from("nuget/flat-index/doc".to_string());
    Setup {
        store,
        clock,
        fake,
        url,
        key,
        _dir: dir,
    }
}

impl Setup {
    async fn get(&self) -> Result<(Arc<MemEntry>, Outcome), AppError> {
        within(self.store.get(&self.key, &self.url, &Transform::None)).await
    }

    /// Waits for background refreshes to finish.
    async fn settled(&self) {
        within(async {
            while !self.store.flights.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    fn hits(&self) -> usize {
        self.fake.hits.load(Ordering::SeqCst)
    }
}

const V1: &str = r#"{"versions":["1.0.0"]}"#;
const V2: &str = r#"{"versions":["1.0.0","2.0.0"]}"#;

#[tokio::test]
async fn fresh_then_stale_then_refetched_as_the_clock_moves() {
    let t = setup(V1).await;
    // (advance s, outcome, body, upstream requests after it settled)
    let table: [(u64, Outcome, &str, usize); 5] = [
        (0, Outcome::Miss, V1, 1),
        (59, Outcome::Hit, V1, 1),
        // Past the TTL: answered at once; one background refresh, a 304
        // that renews the entry.
        (2, Outcome::Stale, V1, 2),
        (59, Outcome::Hit, V1, 2),
        // Past TTL + max_stale: the client waits for the upstream.
        (700, Outcome::Revalidated, V1, 3),
    ];
    for (step, (advance, want, body, hits)) in table.into_iter().enumerate() {
        t.clock.advance(advance);
        let (entry, outcome) = t.get().await.unwrap();
        assert_eq!(
            (outcome, &entry.body[..]),
            (want, body.as_bytes()),
            "step {step}"
        );
        t.settled().await;
        assert_eq!(t.hits(), hits, "step {step}");
    }
    assert_eq!(
        t.fake.revalidations.load(Ordering::SeqCst),
        2,
        "both sent If-None-Match"
    );

    // A changed document replaces the cached one at the next expiry:
    // the stale copy first, the new one once the refresh is in.
    *t.fake.doc.lock().unwrap() = V2.into();
    t.clock.advance(61);
    assert_eq!(&t.get().await.unwrap().0.body[..], V1.as_bytes());
    t.settled().await;
    let (entry, outcome) = t.get().await.unwrap();
    assert_eq!((outcome, &entry.body[..]), (Outcome::Hit, V2.as_bytes()));
}

#[tokio::test]
async fn many_stale_answers_share_one_refresh() {
    let t = setup(V1).await;
    t.get().await.unwrap();
    *t.fake.doc.lock().unwrap() = V2.into();
    t.clock.advance(61);
    let answers = futures_util::future::join_all((0..10).map(|_| t.get())).await;
    for a in answers {
        let (entry, outcome) = a.unwrap();
        assert_eq!((outcome, &entry.body[..]), (Outcome::Stale, V1.as_bytes()));
    }
    t.settled().await;
    assert_eq!(t.hits(), 2, "one refresh for ten stale answers");
    assert_eq!(&t.get().await.unwrap().0.body[..], V2.as_bytes());
}

#[tokio::test]
async fn a_down_upstream_gets_stale_copies_until_max_stale() {
    let t = setup(V1).await;
    t.get().await.unwrap();
    t.fake.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        t.clock.advance(100);
        let (entry, outcome) = t.get().await.unwrap();
        assert_eq!((outcome, &entry.body[..]), (Outcome::Stale, V1.as_bytes()));
        t.settled().await;
    }
    // Past TTL + max_stale the copy is no longer served.
    t.clock.advance(400);
    assert!(t.get().await.is_err());
}

/// Offline, the cached copy is served however old, and nothing is asked.
#[tokio::test]
async fn offline_serves_any_cached_copy() {
    let t = setup(V1).await;
    t.get().await.unwrap();
    t.store.upstream.set_offline(true);
    t.clock.advance(1_000_000);
    let (entry, outcome) = t.get().await.unwrap();
    assert_eq!((outcome, &entry.body[..]), (Outcome::Stale, V1.as_bytes()));
    t.settled().await;
    assert_eq!(t.hits(), 1);
    // A forced revalidation (e.g. after a 404) reads the cache too.
    let forced = within(t.store.revalidate(&t.key, &t.url, &Transform::None)).await;
    assert_eq!(forced.unwrap().1, Outcome::Stale);
    assert_eq!(t.hits(), 1);
}

/// `fresh` answers exactly what `get` would serve as a hit, and never asks
/// the upstream: nothing before the first fetch, the copy within the TTL,
/// nothing once it expired, `NotFound` while a 404 is remembered.
#[tokio::test]
async fn fresh_is_a_hit_without_the_upstream() {
    let t = setup(V1).await;
    let fresh = || async { within(t.store.fresh(&t.key)).await };
    assert!(fresh().await.unwrap().is_none(), "nothing cached yet");
    assert_eq!(t.hits(), 0);
    t.get().await.unwrap();
    // (advance s, cached copy answered)
    for (advance, answered) in [(0, true), (59, true), (2, false), (1_000, false)] {
        t.clock.advance(advance);
        let got = fresh().await.unwrap();
        assert_eq!(got.is_some(), answered, "after +{advance} s");
        if let Some(entry) = got {
            assert_eq!(&entry.body[..], V1.as_bytes());
        }
    }
    assert_eq!(t.hits(), 1, "fresh asked the upstream nothing");
    t.store.cache.negative.insert(t.key.clone(), false);
    assert!(fresh().await.unwrap_err().is_not_found());
}
