//! Three feedcache nodes as one cache (issue #12 points 2 and 3): the owner
//! of a key fills it once for the cluster, and a dead owner leaves the
//! others answering.

mod common;

use common::*;
use feedcache::cluster::Peers;
use feedcache::config::PeerConfig;

const SECRET: &str = "cluster-secret-for-tests";

/// `n` nodes over `up`, each knowing all; `extra` is more config for all.
async fn cluster(
    up: &FakeUpstream,
    dir: &std::path::Path,
    n: usize,
    extra: &str,
    env: &[(&str, &str)],
) -> (Vec<Proxy>, Vec<String>) {
    let addrs: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut nodes = Vec::new();
    for (i, me) in addrs.iter().enumerate() {
        let peers: Vec<String> = addrs
            .iter()
            .map(|a| format!("{{ addr = \"{a}\", me = {} }}", a == me))
            .collect();
        let conf = format!(
            "[cluster]\nsecret_env = \"FC_CLUSTER_SECRET\"\npeers = [{}]\n{extra}",
            peers.join(", ")
        );
        let file = dir.join(format!("node{i}.toml"));
        std::fs::write(&file, conf).unwrap();
        let mut env = env.to_vec();
        env.push(("FC_CLUSTER_SECRET", SECRET));
        let cache = dir.join(format!("node{i}"));
        let args = ["-c", file.to_str().unwrap()];
        nodes.push(Proxy::start_on(me, &up.index_url(), &cache, &args, &env).await);
    }
    (nodes, addrs)
}

/// The node that owns `key` in a ring over `addrs`.
fn owner(addrs: &[String], key: &str) -> usize {
    let list: Vec<PeerConfig> = addrs
        .iter()
        .map(|a| PeerConfig {
            addr: a.parse().unwrap(),
            me: false,
        })
        .collect();
    let mut with_me = list.clone();
    with_me[0].me = true;
    let ring = Peers::new(&with_me, feedcache::secret::Secret::list("x").remove(0)).unwrap();
    let node = ring.owner_of(key).unwrap().to_string();
    addrs.iter().position(|a| *a == node).unwrap()
}

#[tokio::test]
async fn ninety_concurrent_misses_on_three_nodes_make_one_upstream_fetch() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let body = blob(2_000_000, 9);
    let path = "/v3-flatcontainer/herd.pkg/1.0.0/herd.pkg.1.0.0.nupkg";
    // Slow, so the requests overlap the fill (the count holds either way).
    up.set(
        path,
        Behavior::Slow(
            std::time::Duration::from_millis(300),
            Box::new(Behavior::bytes(body.clone())),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _) = cluster(&up, dir.path(), 3, "", &[]).await;
    let url = "/v3/flatcontainer/herd.pkg/1.0.0/herd.pkg.1.0.0.nupkg";
    let gets = (0..90).map(|i| {
        let u = nodes[i % 3].url(url);
        async move { get(&u).await }
    });
    for (s, _, b) in futures_util::future::join_all(gets).await {
        assert!(s == 200 && b == body);
    }
    assert_eq!(up.hits(path), 1, "one upstream fetch for the whole cluster");
    let mut received = 0;
    for n in &nodes {
        let text = String::from_utf8(get(&n.url("/metrics")).await.2).unwrap();
        received += text
            .lines()
            .find_map(|l| {
                l.strip_prefix("feedcache_peer_bytes_total ")?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
    }
    assert_eq!(
        received,
        2 * body.len() as u64,
        "two nodes took it from the owner"
    );
    let health = String::from_utf8(get(&nodes[0].url("/health")).await.2).unwrap();
    assert_eq!(health.matches(": up\n").count(), 2, "{health}");
    // Peers are refused without the secret.
    let fill = format!(
        "/_cluster/fill?entry=nuget/flat/x/1.0.0/x.1.0.0.nupkg&url={}{path}",
        up.base()
    );
    let (s, _, _) = get(&nodes[0].url(&fill)).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_dead_owner_leaves_the_others_answering() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, addrs) = cluster(&up, dir.path(), 3, "", &[]).await;
    // Two packages with the same owner: one fetched before it dies, one after.
    let key = |i: usize| format!("nuget/flat/orphan{i}/1.0.0/orphan{i}.1.0.0.nupkg");
    let dead = owner(&addrs, &key(0));
    let later = (1..).find(|i| owner(&addrs, &key(*i)) == dead).unwrap();
    let body = blob(300_000, 10);
    for i in [0, later] {
        let path = format!("/v3-flatcontainer/orphan{i}/1.0.0/orphan{i}.1.0.0.nupkg");
        up.set(&path, Behavior::bytes(body.clone()));
    }
    let url = |i: usize| format!("/v3/flatcontainer/orphan{i}/1.0.0/orphan{i}.1.0.0.nupkg");
    for node in &nodes {
        let (s, _, b) = get(&node.url(&url(0))).await;
        assert!(s == 200 && b == body);
    }
    drop(nodes.remove(dead));
    for node in &nodes {
        for i in [0, later, later] {
            let (s, _, b) = get(&node.url(&url(i))).await;
            assert!(s == 200 && b == body, "served without the owner");
        }
    }
    let fetched = |i: usize| {
        up.hits(&format!(
            "/v3-flatcontainer/orphan{i}/1.0.0/orphan{i}.1.0.0.nupkg"
        ))
    };
    assert_eq!(fetched(0), 1, "the live nodes kept what the owner sent");
    assert!(
        fetched(later) <= 2,
        "each live node fetched it at most once"
    );
}
