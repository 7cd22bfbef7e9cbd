//! NuGet.exe 5.8 on mono for the end-to-end tests: finding it, packing two
//! real packages, serving them from a fake upstream, installing them.
//!
//! Needs `mono` and NuGet.exe (found via `NUGET_EXE` or the npm package
//! `nuget-exe`). Without them a test reports a skip, unless
//! `FEEDCACHE_REQUIRE_E2E=1` (set by `.ci/run`), where it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

pub fn nuget_exe() -> Option<PathBuf> {
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

pub fn tools() -> Option<PathBuf> {
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
pub async fn nuget(exe: &Path, home: &Path, args: &[&str]) -> std::process::Output {
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

pub fn nuspec(id: &str, version: &str, deps: &str) -> String {
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

/// A registration index; `reg` and `flat` are the upstream's base URLs
/// (with `{base}`), ending in `/`.
pub fn registration(id: &str, version: &str, deps: &str, reg: &str, flat: &str) -> String {
    let lower = id.to_ascii_lowercase();
    format!(
        r#"{{"count":1,"items":[{{"@id":"{reg}{lower}/index.json#page/{version}/{version}","count":1,"lower":"{version}","upper":"{version}",
"items":[{{"@id":"{reg}{lower}/{version}.json","catalogEntry":{{"@id":"{{base}}/v3/catalog0/data/{lower}.{version}.json",
"id":"{id}","version":"{version}","listed":true,"dependencyGroups":[{{"dependencies":[{deps}]}}]}},
"packageContent":"{flat}{lower}/{version}/{lower}.{version}.nupkg"}}]}}]}}"#
    )
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Packs Demo.App 1.0.0 (depending on Demo.Dep 2.0.0) and Demo.Dep 2.0.0
/// with NuGet.exe; returns their bytes.
pub async fn make_packages(exe: &Path, home: &Path, work: &Path) -> (Vec<u8>, Vec<u8>) {
    let src = work.join("src");
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
            exe,
            home,
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
    (app, dep)
}

/// Serves both packages from `up` under the given registration and flat
/// container paths (relative to the upstream, ending in `/`).
pub fn serve_packages(
    up: &FakeUpstream,
    app: &[u8],
    dep: &[u8],
    reg: &str,
    flat: &str,
    gz: &[&str],
) {
    let dep_ref = format!(
        r#"{{"id":"Demo.Dep","range":"[2.0.0, )","registration":"{{base}}{reg}demo.dep/index.json"}}"#
    );
    for (id, version, nupkg, deps) in [
        ("Demo.App", "1.0.0", app, dep_ref.as_str()),
        ("Demo.Dep", "2.0.0", dep, ""),
    ] {
        let lower = id.to_ascii_lowercase();
        let doc = registration(
            id,
            version,
            deps,
            &format!("{{base}}{reg}"),
            &format!("{{base}}{flat}"),
        );
        up.set(
            &format!("{reg}{lower}/index.json"),
            Behavior::json(doc.clone()),
        );
        for gz_hive in gz {
            up.set(
                &format!("{gz_hive}{lower}/index.json"),
                Behavior::Ok {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), "application/json".into()),
                        ("Content-Encoding".into(), "gzip".into()),
                    ],
                    body: gzip(doc.replace("{base}", &up.base()).as_bytes()),
                },
            );
        }
        up.set(
            &format!("{flat}{lower}/index.json"),
            Behavior::json(format!(r#"{{"versions":["{version}"]}}"#)),
        );
        up.set(
            &format!("{flat}{lower}/{version}/{lower}.{version}.nupkg"),
            Behavior::bytes(nupkg.to_vec()),
        );
    }
}

/// Where the fake upstream serves its repository signatures.
pub const SIGNATURES: &str = "/v3-index/repository-signatures/5.0.0/index.json";

/// nuget.org's index with the resources newer clients read besides:
/// repository signatures, vulnerability data, README template.
pub fn serve_modern_index(up: &FakeUpstream) {
    let extra = format!(
        r#"{{"@id":"{{base}}{SIGNATURES}","@type":"RepositorySignatures/5.0.0"}},
 {{"@id":"{{base}}/v3/vulnerabilities/index.json","@type":"VulnerabilityInfo/6.7.0"}},
 {{"@id":"{{base}}/v3-flatcontainer/{{lower_id}}/{{lower_version}}/readme","@type":"ReadmeUriTemplate/6.13.0"}},
 {{"@id":"{{base}}/v3/catalog0/index.json""#
    );
    let catalog = r#"{"@id":"{base}/v3/catalog0/index.json""#;
    up.set(
        "/v3/index.json",
        Behavior::json(upstream::SERVICE_INDEX.replace(catalog, &extra)),
    );
    up.set(
        SIGNATURES,
        Behavior::json(r#"{"allRepositorySigned":false,"signingCertificates":[]}"#),
    );
    up.set(
        "/v3/vulnerabilities/index.json",
        Behavior::json(
            r#"[{"@name":"base","@id":"{base}/v3/vulnerabilities/base.json","@updated":"2026-12-01T00:00:00Z"}]"#,
        ),
    );
    up.set("/v3/vulnerabilities/base.json", Behavior::json("{}"));
}

/// Makes mono's TLS (BoringSSL) under `home` trust `cert_pem`: its user
/// store is a hashed directory, as OpenSSL's `-hash` names the files.
pub fn mono_trust(home: &Path, cert_pem: &str) {
    let mut hash = std::process::Command::new("openssl")
        .args(["x509", "-hash", "-noout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (installed by scripts/deps.sh test)");
    hash.stdin
        .take()
        .unwrap()
        .write_all(cert_pem.as_bytes())
        .unwrap();
    let out = hash.wait_with_output().unwrap();
    assert!(out.status.success());
    let name = String::from_utf8(out.stdout).unwrap();
    let dir = home.join(".config/.mono/new-certs/Trust");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{}.0", name.trim())), cert_pem).unwrap();
}

/// Installs Demo.App twice, each time into a fresh output folder with a fresh
/// NuGet home, and compares both packages byte for byte.
pub async fn install_twice(
    exe: &Path,
    work: &Path,
    source: &str,
    config: &Path,
    app: &[u8],
    dep: &[u8],
) {
    for round in 0..2 {
        let out = work.join(format!("out{round}"));
        let round_home = work.join(format!("home{round}"));
        std::fs::create_dir_all(&round_home).unwrap();
        nuget(
            exe,
            &round_home,
            &[
                "install",
                "Demo.App",
                "-Version",
                "1.0.0",
                "-Source",
                source,
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
}

/// What every NuGet.exe test starts from: the client, a work folder, and
/// the two packages packed by NuGet.exe itself.
pub struct E2e {
    pub exe: PathBuf,
    pub work: tempfile::TempDir,
    pub app: Vec<u8>,
    pub dep: Vec<u8>,
}

impl E2e {
    /// None (the caller returns, a skip) when mono or NuGet.exe is missing
    /// and the run does not require them.
    pub async fn setup() -> Option<E2e> {
        let Some(exe) = tools() else {
            eprintln!("SKIPPED: mono or NuGet.exe not installed");
            return None;
        };
        let work = tempfile::tempdir().unwrap();
        let home = work.path().join("home");
        std::fs::create_dir_all(home.join(".config/NuGet")).unwrap();
        let (app, dep) = make_packages(&exe, &home, work.path()).await;
        Some(E2e {
            exe,
            work,
            app,
            dep,
        })
    }

    pub fn path(&self) -> &Path {
        self.work.path()
    }

    /// A NuGet.Config with no sources of its own: the test names the one
    /// source on the command line.
    pub fn config_without_sources(&self) -> PathBuf {
        let config = self.path().join("NuGet.Config");
        std::fs::write(
            &config,
            r#"<?xml version="1.0" encoding="utf-8"?><configuration><packageSources><clear /></packageSources></configuration>"#,
        )
        .unwrap();
        config
    }

    pub async fn install_twice(&self, source: &str, config: &Path) {
        install_twice(&self.exe, self.path(), source, config, &self.app, &self.dep).await;
    }
}

/// A fake ProGet feed `internal` (insisting on the key `upstream-key`)
/// serving both packages.
pub async fn proget_serving(app: &[u8], dep: &[u8]) -> FakeUpstream {
    let proget = FakeUpstream::start().await;
    proget.require_key("upstream-key");
    proget.set(
        "/nuget/internal/v3/index.json",
        Behavior::json(upstream::PROGET_INDEX),
    );
    serve_packages(
        &proget,
        app,
        dep,
        "/nuget/internal/v3/registrations/",
        "/nuget/internal/v3/flatcontainer/",
        &[],
    );
    proget
}

/// A fake nuget.org with the modern index (`serve_modern_index`) serving
/// both packages, gzip registration hives included.
pub async fn nuget_org_serving(app: &[u8], dep: &[u8]) -> FakeUpstream {
    let up = FakeUpstream::start().await;
    serve_modern_index(&up);
    serve_packages(
        &up,
        app,
        dep,
        "/v3/registration5-semver1/",
        "/v3-flatcontainer/",
        &[
            "/v3/registration5-gz-semver1/",
            "/v3/registration5-gz-semver2/",
        ],
    );
    up
}
