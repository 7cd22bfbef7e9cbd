//! Microbenchmarks: key normalization, routing, registration rewriting
//! (plain and gzip) and per-request rendering, one file out of a 50 MB
//! package, and memory-tier and disk-tier hits.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

use feedcache::cache::{Cache, DiskTier, Freshness, MemoryTier, Meta};
use feedcache::extract::{extract, DirKey, Directories, Limits, Package};
use feedcache::feeds::FeedIndex;
use feedcache::keys::CacheKey;
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
    let signer = std::sync::Arc::new(feedcache::rawlink::RawSigner::with_key(&[0; 32]).unwrap());
    let idx = FeedIndex::build(&FeedRef::Default, &url, INDEX.as_bytes(), &signer).unwrap();
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
    // A gzip hive: decompress (with the size cap), then rewrite.
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(page.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    g.bench_function("gunzip_rewrite", |b| {
        b.iter(|| {
            let plain = feedcache::metadata::gunzip(black_box(&gz), 64 << 20).unwrap();
            idx.rewriter.rewrite_json(&plain)
        })
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    extraction(c, &rt);
    tiers(c, &rt);
}

/// One 64 KiB file out of a 50 MB package (50 incompressible 1 MB files plus
/// small ones): central directory lookup, inflate, stream.
fn extraction(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..50 {
        w.start_file(format!("package/big/{i}.bin"), opts).unwrap();
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        w.write_all(&chunk).unwrap();
    }
    for i in 0..200 {
        w.start_file(format!("package/small/{i}.txt"), opts)
            .unwrap();
        w.write_all(&vec![b'a' + (i % 26) as u8; 64 << 10]).unwrap();
    }
    let pkg = Bytes::from(w.finish().unwrap().into_inner());
    let limits = Limits {
        max_file_size: 1 << 30,
        max_ratio: 100_000,
        max_entries: 100_000,
    };
    // The directory is parsed by the first iteration and kept, as the
    // server keeps it for a cached package.
    let dirs = Directories::new(limits.max_entries);
    let key = DirKey::new(
        CacheKey::from("upack/bench".to_string()),
        "\"bench\"".into(),
        pkg.len() as u64,
    );
    let mut g = c.benchmark_group("extract_from_50MB");
    g.throughput(criterion::Throughput::Bytes(64 << 10));
    g.bench_function("one_64KiB_entry", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut x = extract(
                    Package::Bytes(pkg.clone()),
                    "package/small/7.txt".into(),
                    limits,
                    dirs.clone(),
                    key.clone(),
                )
                .await
                .unwrap();
                let mut n = 0;
                while let Some(chunk) = x.body.recv().await {
                    n += chunk.unwrap().len();
                }
                assert_eq!(n, 64 << 10);
            })
        })
    });
    g.finish();
}

/// A hit in each tier, as the request path does it (`Cache::get`).
fn tiers(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    // Memory tier admits entries up to 4 KiB here, so the 1 MiB one is disk-only.
    let cache = Arc::new(Cache::new(
        MemoryTier::new(64 << 20, 4 << 10),
        DiskTier::open(dir.path()).unwrap(),
        std::time::Duration::from_secs(30),
    ));
    let meta = Meta {
        freshness: Freshness::Immutable,
        content_type: "application/octet-stream".into(),
        content_encoding: None,
        etag: "\"x\"".into(),
        upstream_etag: None,
        last_modified: None,
        stored_at: 0,
        templated: false,
    };
    let small = CacheKey::from("bench/small".to_string());
    let big = CacheKey::from("bench/big".to_string());
    rt.block_on(async {
        cache
            .put(&small, meta.clone(), Bytes::from(vec![1u8; 2048]))
            .await
            .unwrap();
        cache
            .put(&big, meta.clone(), Bytes::from(vec![2u8; 1 << 20]))
            .await
            .unwrap();
        assert!(matches!(
            cache.get(&big).await.unwrap(),
            Some(feedcache::cache::Found::Disk(_))
        ));
    });
    c.bench_function("tier_hit/memory_2KiB", |b| {
        b.iter(|| rt.block_on(async { cache.get(black_box(&small)).await.unwrap().unwrap() }))
    });
    c.bench_function("tier_hit/disk_1MiB", |b| {
        b.iter(|| rt.block_on(async { cache.get(black_box(&big)).await.unwrap().unwrap() }))
    });
}

criterion_group!(core, benches);
criterion_main!(core);
