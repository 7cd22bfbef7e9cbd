//! Hostile upstream documents (issue #13, rows 3 and 6): a service index of
//! thousands of resources and a registration page of millions of tiny values
//! cost bounded time and memory, and never stall the other requests.

mod common;

use common::*;

/// A service index with the usual resources plus `extra` registration hives
/// on made-up hosts, all with the same last path segment (the worst case for
/// naming them).
fn index_with(extra: usize) -> String {
    let mut res = vec![
        r#"{"@id":"{base}/v3-flatcontainer/","@type":"PackageBaseAddress/3.0.0"}"#.to_string(),
        r#"{"@id":"{base}/v3/registration5-semver1/","@type":"RegistrationsBaseUrl"}"#.to_string(),
    ];
    res.extend((0..extra).map(|i| {
        format!(
            r#"{{"@id":"http://h{i}.invalid/registration/","@type":"RegistrationsBaseUrl/3.6.0"}}"#
        )
    }));
    format!(r#"{{"version":"3.0.0","resources":[{}]}}"#, res.join(","))
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test]
async fn an_index_of_thousands_of_resources_is_refused_at_once_and_health_stays_up() {
    let up = FakeUpstream::start().await;
    up.set("/v3/index.json", Behavior::json(index_with(10_000)));
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;

    // Before: the resources were named in cubic time (no answer in 100 s,
    // a worker at 100%, /health hung). Now: a 502 naming the cause.
    let slow = tokio::spawn(get_owned(proxy.url("/v3/index.json")));
    let (s, _, b) = get(&proxy.url("/health")).await;
    assert_eq!((s, b.trim_ascii()), (200, &b"ok"[..]));
    let (s, _, _) = within(slow).await.unwrap();
    assert_eq!(s, 502);

    // At the cap (1,000 resources, 1,000 hosts, one name): served, and a
    // document full of upstream URLs is rewritten against all those rules.
    up.set("/v3/index.json", Behavior::json(index_with(998)));
    let other = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), other.path(), &[]).await;
    let (s, _, b) = get(&proxy.url("/v3/index.json")).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    assert!(
        text.contains("/v3/registration/registration-998/"),
        "every hive named"
    );
    assert!(!text.contains(".invalid"), "no upstream host left");

    let links: Vec<String> = (0..100_000)
        .map(|i| format!(r#""{{base}}/v3/registration5-semver1/p{i}/index.json""#))
        .collect();
    let page = format!(r#"{{"items":[{}]}}"#, links.join(","));
    up.set(
        "/v3/registration5-semver1/big/index.json",
        Behavior::json(page),
    );
    let (s, _, b) = get(&proxy.url("/v3/registration/registration5-semver1/big/index.json")).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(b).unwrap();
    assert!(!text.contains(&up.base()), "every link rewritten");
}

#[tokio::test]
async fn a_page_of_millions_of_tiny_values_costs_memory_near_its_size() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    // 7 million values in 14 MB: as a JSON tree this took ~65 bytes per
    // value (the 63 MB page of the report peaked at 3.4 GB).
    let page = format!(r#"{{"items":[{}0]}}"#, "0,".repeat(7_000_000));
    up.set(
        "/v3/registration5-semver1/tiny/index.json",
        Behavior::json(page.clone()),
    );
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), dir.path(), &[]).await;
    let url = proxy.url("/v3/registration/registration5-semver1/tiny/index.json");
    let (s, _, b) = get(&url).await;
    assert_eq!(s, 200);
    assert_eq!(b.len(), page.len());
    let (s, _, _) = get(&proxy.url("/health")).await;
    assert_eq!(s, 200);
    let peak = peak_rss_mib(proxy.pid());
    eprintln!("peak RSS {peak} MiB");
    assert!(peak < 200, "peak RSS {peak} MiB for a 14 MB document");

    // Past the value cap (8 million): refused, not cached.
    let huge = format!(r#"{{"items":[{}0]}}"#, "0,".repeat(8_000_001));
    up.set(
        "/v3/registration5-semver1/huge/index.json",
        Behavior::json(huge),
    );
    let huge_url = proxy.url("/v3/registration/registration5-semver1/huge/index.json");
    assert_eq!(get(&huge_url).await.0, 502);
    assert_eq!(get(&huge_url).await.0, 502);
    assert_eq!(up.hits("/v3/registration5-semver1/huge/index.json"), 2);
}

/// `get` for a spawned task (owns its URL).
async fn get_owned(url: String) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    get(&url).await
}
