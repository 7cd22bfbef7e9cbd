//! Crash safety and graceful shutdown: `kill -9` in the middle of a large fill
//! leaves no entry behind; SIGTERM lets an in-flight download finish.

mod common;

use std::sync::Arc;

use common::*;
use futures_util::StreamExt;
use tokio::sync::Notify;

const NUPKG: &str = "/v3-flatcontainer/big/1.0.0/big.1.0.0.nupkg";
const PATH: &str = "/v3/flatcontainer/big/1.0.0/big.1.0.0.nupkg";

/// Starts a download that stalls after `split` bytes; returns once the client
/// has received some of the body.
async fn stalled_download(
    up: &FakeUpstream,
    proxy: &Proxy,
    body: &[u8],
    gate: &Arc<Notify>,
) -> tokio::task::JoinHandle<Result<Vec<u8>, String>> {
    up.set(
        NUPKG,
        Behavior::Gated {
            body: body.to_vec(),
            split: 1_000_000,
            gate: gate.clone(),
        },
    );
    let resp = within(client().get(proxy.url(PATH)).send())
        .await
        .expect("headers");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = within(stream.next())
        .await
        .expect("a first chunk")
        .expect("body");
    tokio::spawn(async move {
        let mut got = first.to_vec();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        Ok(got)
    })
}

#[tokio::test]
async fn kill_9_mid_fill_leaves_no_entry() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(3_000_000, 11);
    let gate = Arc::new(Notify::new());
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let download = stalled_download(&up, &proxy, &body, &gate).await;
    proxy.kill();
    assert!(
        within(download).await.unwrap().is_err(),
        "the cut download must fail"
    );

    assert_eq!(temp_files(dir.path()), 1, "the killed fill's temp file");
    let restarted = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    // The start-up scan (a background thread) removes the killed run's
    // temp file.
    eventually(async || temp_files(dir.path()) == 0).await;
    up.set(NUPKG, Behavior::bytes(body.clone()));
    let (s, h, b) = get(&restarted.url(PATH)).await;
    assert_eq!(
        (s, h["x-cache"].to_str().unwrap()),
        (200, "MISS"),
        "nothing half-written was kept"
    );
    assert!(b == body);
    assert_eq!(up.hits(NUPKG), 2);
    let (_, h, b) = get(&restarted.url(PATH)).await;
    assert_eq!(h["x-cache"], "HIT");
    assert!(b == body);
}

#[tokio::test]
async fn sigterm_drains_in_flight_downloads() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(3_000_000, 12);
    let gate = Arc::new(Notify::new());
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let download = stalled_download(&up, &proxy, &body, &gate).await;
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    // The download is still going while the server shuts down; let it finish.
    gate.notify_one();
    let got = within(download).await.unwrap().expect("download completes");
    assert!(got == body, "the drained download is complete");
    // And then the process exits by itself.
    proxy.wait_exit().await;
}

/// The entry file of a cache key (`data/ab/<sha256 of key>`).
fn entry_file(cache: &std::path::Path, key: &str) -> std::path::PathBuf {
    use sha2::Digest;
    let name = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    cache.join("data").join(&name[..2]).join(name)
}

/// A power cut after entries were renamed into place but before the file
/// system wrote their data (entries are not fsynced one by one): files come
/// back short or zero-filled; a `kill -9` between creating a new entry's
/// file and writing it leaves it empty. Such entries are detected by their seal when
/// loaded, removed and fetched again; intact ones are served as they are.
#[tokio::test]
async fn entries_torn_by_a_power_cut_are_refetched_not_served() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let names = ["short", "zeroed", "intact", "bigzero", "empty"];
    let mut bodies = Vec::new();
    for (i, n) in names.iter().enumerate() {
        // 20 KB bodies take the in-memory fill, 1 MB the streaming one.
        let len = if *n == "bigzero" { 1_000_000 } else { 20_000 };
        let body = blob(len, 40 + i as u64);
        up.set(
            &format!("/v3-flatcontainer/{n}/1.0.0/{n}.1.0.0.nupkg"),
            Behavior::bytes(body.clone()),
        );
        bodies.push(body);
    }
    let dir = tempfile::tempdir().unwrap();
    let url = |p: &Proxy, n: &str| p.url(&format!("/v3/flatcontainer/{n}/1.0.0/{n}.1.0.0.nupkg"));
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    for (n, body) in names.iter().zip(&bodies) {
        let (s, _, b) = get(&url(&proxy, n)).await;
        assert_eq!((s, &b), (200, body));
    }
    let key = |n: &str| format!("nuget/flat/{n}/1.0.0/{n}.1.0.0.nupkg");
    // A streaming fill publishes its entry just after the last byte reached
    // the client: wait for all files before the cut.
    eventually(async || {
        names
            .iter()
            .all(|n| entry_file(dir.path(), &key(n)).exists())
    })
    .await;
    proxy.kill();

    // The cut: nothing was known to be durable, and four files are torn.
    let _ = std::fs::remove_file(dir.path().join("durable"));
    for (n, cut) in [("short", 5_000), ("empty", u64::MAX)] {
        let f = entry_file(dir.path(), &key(n));
        let len = std::fs::metadata(&f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len.saturating_sub(cut))
            .unwrap();
    }
    for n in ["zeroed", "bigzero"] {
        let f = entry_file(dir.path(), &key(n));
        let mut bytes = std::fs::read(&f).unwrap();
        let from = bytes.len() - 10_000;
        bytes[from..].fill(0);
        std::fs::write(&f, bytes).unwrap();
    }

    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    for (n, body) in names.iter().zip(&bodies) {
        let (s, h, b) = get(&url(&proxy, n)).await;
        assert_eq!(s, 200, "{n}");
        assert!(b == *body, "{n}: wrong bytes served");
        let fetches = up.hits(&format!("/v3-flatcontainer/{n}/1.0.0/{n}.1.0.0.nupkg"));
        let (want_cache, want_fetches) = if *n == "intact" {
            ("HIT", 1)
        } else {
            ("MISS", 2)
        };
        assert_eq!(h["x-cache"], want_cache, "{n}");
        assert_eq!(fetches, want_fetches, "{n}");
    }
}
