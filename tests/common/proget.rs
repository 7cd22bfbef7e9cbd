//! A fake ProGet (insisting on its API key) and a default NuGet upstream
//! with feedcache configured for both, for the ProGet test files.

use std::io::Write;

use super::*;

pub const KEY: &str = "upstream-secret-7f3a";
pub const FLAT: &str = "/nuget/internal/v3/flatcontainer/";

pub struct Env {
    pub nuget: FakeUpstream,
    pub proget: FakeUpstream,
    pub proxy: Proxy,
    pub _dir: tempfile::TempDir,
}

/// A default NuGet upstream, a fake ProGet, and feedcache configured for both;
/// `client_key` turns client authentication on.
pub async fn setup(client_key: Option<&str>) -> Env {
    setup_with(client_key, "").await
}

/// `setup` with more TOML appended to feedcache's config file.
pub async fn setup_with(client_key: Option<&str>, extra_conf: &str) -> Env {
    setup_full(client_key, "", extra_conf).await
}

/// `setup_with`, with `top` (root-level keys) at the start of the file.
pub async fn setup_full(client_key: Option<&str>, top: &str, extra_conf: &str) -> Env {
    let nuget = FakeUpstream::start().await;
    nuget.serve_nuget_index();
    let proget = FakeUpstream::start().await;
    proget.require_key(KEY);
    proget.set(
        "/nuget/internal/v3/index.json",
        Behavior::json(upstream::PROGET_INDEX),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut conf = format!(
        "{top}[proget]\nurl = \"{}/\"\napi_key_env = \"FC_TEST_PROGET_KEY\"\n",
        proget.base()
    );
    if let Some(k) = client_key {
        let keys = dir.path().join("keys");
        std::fs::write(&keys, format!("# client keys\n{k}\n")).unwrap();
        conf.push_str(&format!("[auth]\napi_keys_file = \"{}\"\n", keys.display()));
    }
    conf.push_str(extra_conf);
    let conf_path = dir.path().join("feedcache.toml");
    std::fs::write(&conf_path, conf).unwrap();
    let proxy = Proxy::start_with_env(
        &nuget.index_url(),
        &dir.path().join("cache"),
        &["-c", conf_path.to_str().unwrap()],
        &[("FC_TEST_PROGET_KEY", KEY)],
    )
    .await;
    Env {
        nuget,
        proget,
        proxy,
        _dir: dir,
    }
}

/// A universal package: `upack.json` plus the given files.
pub fn upack(group: &str, name: &str, version: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    w.start_file("upack.json", opts).unwrap();
    write!(
        w,
        r#"{{"group":"{group}","name":"{name}","version":"{version}"}}"#
    )
    .unwrap();
    for (path, body) in files {
        w.start_file(*path, opts).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}
