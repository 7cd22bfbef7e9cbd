//! Microbenchmarks of the pure request path: key normalization, routing,
//! registration rewriting and per-request rendering.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use feedcache::feeds::FeedIndex;
use feedcache::keys::{normalize_id, normalize_version, FeedRef};
use feedcache::rewrite::render;
use feedcache::routes::route;

const INDEX: &str = r#"{"version":"3.0.0","resources":[
 {"@id":"https://api.nuget.org/v3/registration5-semver1/","@type":"RegistrationsBaseUrl"},
 {"@id":"https://api.nuget.org/v3-flatcontainer/","@type":"PackageBaseAddress/3.0.0"}]}"#;

/// A registration page shaped like nuget.org's for a package with many versions.
fn registration_page(versions: usize) -> String {
    let items: Vec<String> = (0..versions)
        .map(|i| {
            format!(
                r#"{{"@id":"https://api.nuget.org/v3/registration5-semver1/big/1.0.{i}.json","catalogEntry":{{"@id":"https://api.nuget.org/v3/catalog0/data/2024/big.1.0.{i}.json","id":"Big","version":"1.0.{i}","description":"A package with many versions","dependencyGroups":[{{"dependencies":[{{"id":"Dep","range":"[1.0.0, )","registration":"https://api.nuget.org/v3/registration5-semver1/dep/index.json"}}]}}]}},"packageContent":"https://api.nuget.org/v3-flatcontainer/big/1.0.{i}/big.1.0.{i}.nupkg"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"count":1,"items":[{{"count":{versions},"items":[{}]}}]}}"#,
        items.join(",")
    )
}

fn benches(c: &mut Criterion) {
    c.bench_function("normalize_version", |b| {
        b.iter(|| normalize_version(black_box("1.00.0.0-Beta.1+build.7")))
    });
    c.bench_function("normalize_id", |b| {
        b.iter(|| normalize_id(black_box("Microsoft.Extensions.Logging")))
    });
    let get = http::Method::GET;
    c.bench_function("route_nupkg", |b| {
        b.iter(|| {
            route(
                &get,
                black_box("/v3/flatcontainer/Newtonsoft.Json/13.0.1/Newtonsoft.Json.13.0.1.nupkg"),
                None,
            )
        })
    });

    let url = url::Url::parse("https://api.nuget.org/v3/index.json").unwrap();
    let idx = FeedIndex::build(&FeedRef::Default, &url, INDEX.as_bytes()).unwrap();
    let page = registration_page(128);
    let mut g = c.benchmark_group("registration_128_versions");
    g.throughput(criterion::Throughput::Bytes(page.len() as u64));
    g.bench_function("rewrite", |b| {
        b.iter(|| idx.rewriter.rewrite_json(black_box(page.as_bytes())))
    });
    let template = Bytes::from(idx.rewriter.rewrite_json(page.as_bytes()).unwrap());
    g.bench_function("render", |b| {
        b.iter(|| render(black_box(&template), "http://127.0.0.1:5000"))
    });
    g.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
