//! Universal packages through ProGet: downloads, `latest`, single files out
//! of cached packages, and the limits hostile packages meet.

mod common;

use common::proget::*;
use common::*;

#[tokio::test]
async fn universal_packages_download_latest_and_single_files() {
    let env = setup(None).await;
    let data = blob(200_000, 5);
    let pkg = upack(
        "tools/build",
        "cli",
        "1.2.0",
        &[
            ("package/My File.txt", b"hello world"),
            ("package/deep/nested/data.bin", &data),
        ],
    );
    let up_path = "/upack/assets/download/tools/build/cli/1.2.0";
    env.proget.set(up_path, Behavior::bytes(pkg.clone()));
    env.proget.set(
        "/api/packages/assets/latest?group=tools%2Fbuild&name=cli",
        Behavior::json(r#"[{"group":"tools/build","name":"cli","version":"1.2.0"}]"#),
    );
    env.proget.set(
        "/upack/assets/download-vpack/tools/virt/2.0.0",
        Behavior::json(r#"{"name":"virt","version":"2.0.0","contents":["tools/build/cli:1.2.0"]}"#),
    );

    let p = |s: &str| env.proxy.url(s);
    let (s, _, b) = get(&p("/upack/assets/download/tools/build/cli/1.2.0")).await;
    assert_eq!(s, 200);
    assert!(b == pkg);
    let (s, _, b) = get(&p("/upack/assets/download/Tools/Build/CLI?latest")).await;
    assert_eq!(s, 200);
    assert!(b == pkg);
    let files: &[(&str, &[u8])] = &[
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package/My%20File.txt",
            b"hello world",
        ),
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package%2FMy+File.txt",
            b"hello world",
        ),
        (
            "/upack/assets/download-file/tools/build/cli?latest&path=package/deep/nested/data.bin",
            &data,
        ),
    ];
    for (path, want) in files {
        let (s, h, b) = get(&p(path)).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(h["content-length"], want.len().to_string().as_str());
        assert!(b == *want, "{path}: wrong body");
    }
    let (s, h, b) = get(&p(
        "/upack/assets/download-file/tools/build/cli/1.2.0?path=upack.json",
    ))
    .await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap()),
        (200, "application/json")
    );
    assert!(String::from_utf8(b).unwrap().contains(r#""name":"cli""#));
    // Every file came out of the one cached copy.
    assert_eq!(env.proget.hits(up_path), 1);

    env.proget.set(
        "/api/packages/assets/latest?group=tools&name=virt",
        Behavior::json(r#"[{"group":"tools","name":"virt","version":"2.0.0"}]"#),
    );
    for path in [
        "/upack/assets/download-vpack/tools/virt/2.0.0",
        "/upack/assets/download-vpack/tools/virt?latest",
    ] {
        let (s, _, b) = get(&p(path)).await;
        assert_eq!(s, 200, "{path}");
        assert!(String::from_utf8(b).unwrap().contains("contents"), "{path}");
    }
    assert_eq!(
        env.proget
            .hits("/upack/assets/download-vpack/tools/virt/2.0.0"),
        1
    );
    let table: &[(&str, u16)] = &[
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package/missing.txt",
            404,
        ),
        (
            "/upack/assets/download-file/tools/build/cli/1.2.0?path=package/deep",
            404,
        ),
        ("/upack/assets/download-file/tools/build/cli/1.2.0", 400),
        ("/upack/assets/download/tools/build/cli", 400),
        ("/upack/assets/download/cli", 400),
        ("/upack/assets/download-vpack/tools/virt", 400),
        ("/upack/assets/download/tools/nothing/1.0.0", 404),
        ("/upack/assets/download/tools/nothing?latest", 404),
    ];
    for (path, want) in table {
        let (s, _, _) = get(&p(path)).await;
        assert_eq!(s, *want, "{path}");
    }
}

#[tokio::test]
async fn hostile_paths_bombs_and_corrupt_packages() {
    let env = setup(None).await;
    let pkg = upack("g", "app", "1.0.0", &[("package/a.txt", b"inside")]);
    env.proget
        .set("/upack/assets/download/g/app/1.0.0", Behavior::bytes(pkg));
    let file = |q: &str| {
        env.proxy
            .url(&format!("/upack/assets/download-file/g/app/1.0.0?{q}"))
    };
    let (s, _, _) = get(&file("path=package/a.txt")).await;
    assert_eq!(s, 200);
    let long = format!("path={}", "a/".repeat(1500));
    let attempts = [
        "path=../upack.json",
        "path=package/../upack.json",
        "path=%2e%2e/upack.json",
        "path=%2e%2e%2fupack.json",
        "path=%252e%252e%252fupack.json",
        "path=package%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "path=/etc/passwd",
        "path=%2Fetc%2Fpasswd",
        "path=C:/Windows/win.ini",
        "path=..%5C..%5Cetc%5Cpasswd",
        "path=package%5Ca.txt",
        "path=package/a.txt%00.png",
        "path=package//a.txt",
        "path=./package/a.txt",
        "path=%FF%FE",
        long.as_str(),
    ];
    for q in attempts {
        let (s, _, b) = get(&file(q)).await;
        assert!(matches!(s, 400 | 404 | 414), "{q}: {s}");
        assert!(!String::from_utf8_lossy(&b).contains("root:"), "{q}");
    }
    for path in [
        "/upack/assets/download/%2E%2E/app/1.0.0",
        "/upack/assets/download/..%2F..%2Fetc/app/1.0.0",
        "/upack/assets/download/g/app/1.0.0%2F..%2F..",
    ] {
        // (The client may already have resolved `%2E%2E` itself: then 404.)
        let (s, _, _) = get(&env.proxy.url(path)).await;
        assert!(matches!(s, 400 | 404), "{path}: {s}");
    }

    // A zip bomb: 8 MiB of zeros in a few KB. Refused before inflating.
    let bomb = upack(
        "g",
        "bomb",
        "1.0.0",
        &[("package/zeros", &vec![0u8; 8 << 20])],
    );
    assert!(bomb.len() < 100_000);
    env.proget
        .set("/upack/assets/download/g/bomb/1.0.0", Behavior::bytes(bomb));
    let (s, _, _) = get(&env
        .proxy
        .url("/upack/assets/download-file/g/bomb/1.0.0?path=package/zeros"))
    .await;
    assert_eq!(s, 502);

    // Not a zip: 502, and not cached (the next request fetches again).
    let broken = "/upack/assets/download/g/broken/1.0.0";
    env.proget.set(
        broken,
        Behavior::bytes(b"PK\x03\x04 this is not a zip".to_vec()),
    );
    for round in 1..=2 {
        let (s, _, _) = get(&env
            .proxy
            .url("/upack/assets/download-file/g/broken/1.0.0?path=upack.json"))
        .await;
        assert_eq!(s, 502);
        assert_eq!(env.proget.hits(broken), round);
    }
    // Cut off mid-body: 502, not cached.
    let cut = "/upack/assets/download/g/cut/1.0.0";
    env.proget.set(
        cut,
        Behavior::Truncate {
            declared: 10_000,
            body: vec![b'P'; 100],
        },
    );
    for round in 1..=2 {
        let (s, _, _) = get(&env
            .proxy
            .url("/upack/assets/download-file/g/cut/1.0.0?path=upack.json"))
        .await;
        assert_eq!(s, 502);
        assert_eq!(env.proget.hits(cut), round);
    }
}

#[tokio::test]
async fn packages_over_the_entry_limit_are_refused_and_not_cached() {
    let env = setup_with(None, "[extract]\nmax_entries = 1000\n").await;
    let files = |n: usize| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("package/f{i}.txt"), blob(100, i as u64)))
            .collect()
    };
    let pack = |name: &str, files: &[(String, Vec<u8>)]| {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        upack("g", name, "1.0.0", &refs)
    };
    // 2,000 tiny entries: over the limit, and over 256 KiB, so the package
    // is streamed through a file like the huge ones.
    let many = pack("many", &files(2000));
    assert!(many.len() > 256 << 10, "{}", many.len());
    let up = "/upack/assets/download/g/many/1.0.0";
    env.proget.set(up, Behavior::bytes(many));
    let file = env
        .proxy
        .url("/upack/assets/download-file/g/many/1.0.0?path=package/f1.txt");
    let (s, _, b) = get(&file).await;
    assert_eq!(s, 502, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("extraction limits"));
    assert_eq!(env.proget.hits(up), 1);
    // Nothing refused is kept: the next request for the file, and one for
    // the whole package, each fetch it again. A request sent the moment the
    // refused fill's clients got their error can still join that fill while
    // it unregisters, so each waits for its fetch rather than expecting it
    // on the first try. (The whole package streams as it arrives, so its
    // client may get every byte before the check at the end refuses it.)
    let whole = env.proxy.url(up);
    for (url, fetches) in [(&file, 2), (&whole, 3)] {
        eventually(async || {
            if let Ok(r) = within(client().get(url).send()).await {
                let _ = within(r.bytes()).await;
            }
            env.proget.hits(up) >= fetches
        })
        .await;
    }

    // Under the limit: served, twice, from one fetch; HTML inside a package
    // comes out as plain text.
    let mut few = files(500);
    few.push(("package/index.html".into(), b"<script>1</script>".to_vec()));
    let up = "/upack/assets/download/g/few/1.0.0";
    env.proget.set(up, Behavior::bytes(pack("few", &few)));
    for want in ["MISS", "HIT"] {
        let (s, h, b) = get(&env
            .proxy
            .url("/upack/assets/download-file/g/few/1.0.0?path=package/f7.txt"))
        .await;
        assert_eq!((s, b), (200, blob(100, 7)));
        assert_eq!(h["x-cache"], want);
    }
    let (s, h, _) = get(&env
        .proxy
        .url("/upack/assets/download-file/g/few/1.0.0?path=package/index.html"))
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert_eq!(env.proget.hits(up), 1);
}

/// With the cache disk refusing writes (issue #13 row 9), one file out of an
/// uncached package is still served: the package is read into memory for
/// the request, checked, and not kept.
#[tokio::test]
async fn single_files_are_served_while_the_disk_takes_no_writes() {
    let env = setup(None).await;
    let data = blob(400_000, 6);
    let pkg = upack("tools", "cli", "3.0.0", &[("package/data.bin", &data)]);
    let up_path = "/upack/assets/download/tools/cli/3.0.0";
    env.proget.set(up_path, Behavior::bytes(pkg));
    forbid_writes(env.proxy.pid());
    let url = env
        .proxy
        .url("/upack/assets/download-file/tools/cli/3.0.0?path=package/data.bin");
    for _ in 0..2 {
        let (s, h, b) = get(&url).await;
        assert_eq!((s, h["x-cache"].to_str().unwrap()), (200, "MISS"));
        assert!(b == data);
    }
    // A content archive is built in memory meanwhile.
    let content = env
        .proxy
        .url("/upack/assets/download/tools/cli/3.0.0?contentOnly=zip");
    let (s, _, b) = get(&content).await;
    assert_eq!(s, 200);
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(b)).unwrap();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name("data.bin").unwrap(), &mut body).unwrap();
    assert!(body == data);
    assert!(
        env.proget.hits(up_path) >= 2,
        "not kept while the disk is down"
    );
}

/// `download?contentOnly=zip|tgz` (issue #10 point 5): made locally from the
/// cached package, exactly the files under `package/` without that prefix
/// and without `upack.json`; the upstream is asked for the package once.
#[tokio::test]
async fn content_only_archives_are_made_from_the_cached_package() {
    use std::io::Read;
    let env = setup(None).await;
    let big = blob(300_000, 8);
    let pkg = upack(
        "g",
        "tool",
        "1.0.0",
        &[
            ("package/readme.txt", b"hi"),
            ("package/bin/tool.dll", &big),
        ],
    );
    let up_path = "/upack/assets/download/g/tool/1.0.0";
    env.proget.set(up_path, Behavior::bytes(pkg));
    let url = |f: &str| {
        env.proxy.url(&format!(
            "/upack/assets/download/g/tool/1.0.0?contentOnly={f}"
        ))
    };
    let want = |mut files: Vec<(String, Vec<u8>)>| {
        files.sort();
        assert_eq!(
            files,
            vec![
                ("bin/tool.dll".to_string(), big.clone()),
                ("readme.txt".to_string(), b"hi".to_vec())
            ]
        );
    };
    for round in ["MISS", "HIT"] {
        let (s, h, b) = get(&url("zip")).await;
        assert_eq!(
            (s, h["content-type"].to_str().unwrap()),
            (200, "application/zip")
        );
        assert_eq!(h["x-cache"], round, "made once, then kept");
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(b)).unwrap();
        let files = (0..z.len())
            .map(|i| {
                let mut f = z.by_index(i).unwrap();
                let mut body = Vec::new();
                f.read_to_end(&mut body).unwrap();
                (f.name().to_owned(), body)
            })
            .collect();
        want(files);

        let (s, h, b) = get(&url("tgz")).await;
        assert_eq!(
            (s, h["content-type"].to_str().unwrap()),
            (200, "application/gzip")
        );
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(&b[..]));
        let files = t
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), body)
            })
            .collect();
        want(files);
    }
    assert_eq!(
        env.proget.hits(up_path),
        1,
        "one fetch for both archives, twice"
    );
    let (s, _, _) = get(&url("rar")).await;
    assert_eq!(s, 400);
}
