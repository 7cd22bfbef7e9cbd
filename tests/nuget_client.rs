//! End to end with a real NuGet client: NuGet.exe 5.8 on mono installs real
//! packages (made with `nuget pack`) through feedcache from a fake upstream.
//!
//! Needs `mono` and NuGet.exe (found via `NUGET_EXE` or the npm package
//! `nuget-exe`). Without them the test reports a skip, unless
//! `FEEDCACHE_REQUIRE_E2E=1` (set by `.ci/run`), where it fails.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn nuget_exe() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NUGET_EXE") {
        return Some(PathBuf::from(p));
    }
    let root = std::process::Command::new("npm")
        .args(["root", "-g"])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(root.stdout).ok()?.trim()).join("nuget-exe");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("exe")))
}

fn tools() -> Option<PathBuf> {
    let mono_ok = std::process::Command::new("mono")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (mono_ok, nuget_exe()) {
        (true, Some(exe)) => Some(exe),
        _ if std::env::var("FEEDCACHE_REQUIRE_E2E").as_deref() == Ok("1") => {
            panic!("mono and NuGet.exe are required (run scripts/deps.sh)")
        }
        _ => None,
    }
}

/// Runs NuGet.exe with a private home and config, under a time limit.
async fn nuget(exe: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("mono");
    cmd.arg(exe)
        .args(args)
        .env("HOME", home)
        .env("NUGET_PACKAGES", home.join("packages"))
        .env("NUGET_HTTP_CACHE_PATH", home.join("http-cache"))
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("NuGet.exe timed out")
        .expect("run NuGet.exe");
    if !out.status.success() {
        panic!(
            "NuGet.exe {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn nuspec(id: &str, version: &str, deps: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<package xmlns="http://schemas.microsoft.com/packaging/2010/07/nuspec.xsd">
  <metadata>
    <id>{id}</id><version>{version}</version><authors>feedcache</authors>
    <description>test package</description>
    <dependencies>{deps}</dependencies>
  </metadata>
  <files><file src="content/**" target="content" /></files>
</package>"#
    )
}

fn registration(id: &str, version: &str, deps: &str) -> String {
    let lower = id.to_ascii_lowercase();
    format!(
        r#"{{"count":1,"items":[{{"@id":"{{base}}/v3/registration5-semver1/{lower}/index.json#page/{version}/{version}","count":1,"lower":"{version}","upper":"{version}",
"items":[{{"@id":"{{base}}/v3/registration5-semver1/{lower}/{version}.json","catalogEntry":{{"@id":"{{base}}/v3/catalog0/data/{lower}.{version}.json",
"id":"{id}","version":"{version}","listed":true,"dependencyGroups":[{{"dependencies":[{deps}]}}]}},
"packageContent":"{{base}}/v3-flatcontainer/{lower}/{version}/{lower}.{version}.nupkg"}}]}}]}}"#
    )
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn nuget_exe_installs_through_feedcache() {
    let Some(exe) = tools() else {
        eprintln!("SKIPPED: mono or NuGet.exe not installed");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(home.join(".config/NuGet")).unwrap();

    // Two real packages: Demo.App 1.0.0 depends on Demo.Dep 2.0.0.
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("content")).unwrap();
    std::fs::write(src.join("content/readme.txt"), "hello from feedcache").unwrap();
    std::fs::write(src.join("Demo.Dep.nuspec"), nuspec("Demo.Dep", "2.0", "")).unwrap();
    std::fs::write(
        src.join("Demo.App.nuspec"),
        nuspec(
            "Demo.App",
            "1.0.0",
            r#"<dependency id="Demo.Dep" version="2.0.0" />"#,
        ),
    )
    .unwrap();
    for spec in ["Demo.Dep.nuspec", "Demo.App.nuspec"] {
        let s = src.join(spec);
        let o = src.to_str().unwrap();
        nuget(
            &exe,
            &home,
            &[
                "pack",
                s.to_str().unwrap(),
                "-OutputDirectory",
                o,
                "-NonInteractive",
            ],
        )
        .await;
    }
    let app = std::fs::read(src.join("Demo.App.1.0.0.nupkg")).expect("Demo.App packed");
    let dep = std::fs::read(src.join("Demo.Dep.2.0.0.nupkg")).expect("Demo.Dep packed");

    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    let dep_ref = r#"{"id":"Demo.Dep","range":"[2.0.0, )","registration":"{base}/v3/registration5-semver1/demo.dep/index.json"}"#;
    for (id, version, nupkg, deps) in [
        ("Demo.App", "1.0.0", &app, dep_ref),
        ("Demo.Dep", "2.0.0", &dep, ""),
    ] {
        let lower = id.to_ascii_lowercase();
        let reg = registration(id, version, deps);
        up.set(
            &format!("/v3/registration5-semver1/{lower}/index.json"),
            Behavior::json(reg.clone()),
        );
        for gz_hive in ["registration5-gz-semver1", "registration5-gz-semver2"] {
            up.set(
                &format!("/v3/{gz_hive}/{lower}/index.json"),
                Behavior::Ok {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), "application/json".into()),
                        ("Content-Encoding".into(), "gzip".into()),
                    ],
                    body: gzip(reg.replace("{base}", &up.base()).as_bytes()),
                },
            );
        }
        up.set(
            &format!("/v3-flatcontainer/{lower}/index.json"),
            Behavior::json(format!(r#"{{"versions":["{version}"]}}"#)),
        );
        up.set(
            &format!("/v3-flatcontainer/{lower}/{version}/{lower}.{version}.nupkg"),
            Behavior::bytes(nupkg.clone()),
        );
    }

    let cache = work.path().join("cache");
    let proxy = Proxy::start(&up.index_url(), &cache, &[]).await;
    let config = work.path().join("NuGet.Config");
    std::fs::write(
        &config,
        r#"<?xml version="1.0" encoding="utf-8"?><configuration><packageSources><clear /></packageSources></configuration>"#,
    )
    .unwrap();
    let source = proxy.url("/v3/index.json");

    for round in 0..2 {
        let out = work.path().join(format!("out{round}"));
        let round_home = work.path().join(format!("home{round}"));
        std::fs::create_dir_all(&round_home).unwrap();
        nuget(
            &exe,
            &round_home,
            &[
                "install",
                "Demo.App",
                "-Version",
                "1.0.0",
                "-Source",
                &source,
                "-OutputDirectory",
                out.to_str().unwrap(),
                "-ConfigFile",
                config.to_str().unwrap(),
                "-NoCache",
                "-DirectDownload",
                "-NonInteractive",
            ],
        )
        .await;
        let got_app = std::fs::read(out.join("Demo.App.1.0.0/Demo.App.1.0.0.nupkg"))
            .expect("Demo.App installed");
        let got_dep = std::fs::read(out.join("Demo.Dep.2.0.0/Demo.Dep.2.0.0.nupkg"))
            .expect("Demo.Dep installed");
        assert!(
            got_app == app,
            "round {round}: Demo.App differs from the packed file"
        );
        assert!(
            got_dep == dep,
            "round {round}: Demo.Dep differs from the packed file"
        );
    }
    // Each package left the upstream once; the second install was all cache.
    assert_eq!(
        up.hits("/v3-flatcontainer/demo.app/1.0.0/demo.app.1.0.0.nupkg"),
        1
    );
    assert_eq!(
        up.hits("/v3-flatcontainer/demo.dep/2.0.0/demo.dep.2.0.0.nupkg"),
        1
    );
    // Nothing reached the upstream except through feedcache.
    let agents = up.agents();
    assert!(!agents.is_empty());
    for a in &agents {
        assert!(
            a.starts_with("feedcache/"),
            "a request reached the upstream directly: {a:?}"
        );
    }
}
