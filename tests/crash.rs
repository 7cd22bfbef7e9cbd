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

    let restarted = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let tmp_left = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(
        tmp_left, 0,
        "temp files of the killed run are removed at start"
    );
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
