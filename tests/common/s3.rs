//! A real S3-compatible server on an ephemeral 127.0.0.1 port for the
//! cluster tests: s3s-fs (S3 over a directory), installed by
//! `scripts/deps.sh test` into a fixed root and reused across runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::eventually;

/// The bucket every test uses (a directory under the server's root).
pub const BUCKET: &str = "feedcache";
const ID: &str = "feedcache-test";
const SECRET: &str = "feedcache-test-secret-0123456789";

/// Where `scripts/deps.sh` installs the tools it builds.
pub fn tools_root() -> PathBuf {
    std::env::var_os("FEEDCACHE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            Path::new(&home).join(".cache/feedcache-tools")
        })
}

/// The s3s-fs binary, or `None` (a skip) when it is not installed; with
/// `FEEDCACHE_REQUIRE_E2E=1` (CI) a missing server fails the test.
pub fn s3s_fs() -> Option<PathBuf> {
    let bin = tools_root().join("bin/s3s-fs");
    if bin.exists() {
        return Some(bin);
    }
    if std::env::var("FEEDCACHE_REQUIRE_E2E").as_deref() == Ok("1") {
        panic!("s3s-fs is required (run scripts/deps.sh test)");
    }
    None
}

/// A running s3s-fs; killed when dropped.
pub struct S3 {
    child: Option<Child>,
    pub port: u16,
    root: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

impl S3 {
    /// Starts a server with an empty bucket; `None` when s3s-fs is absent.
    pub async fn start() -> Option<S3> {
        let bin = s3s_fs()?;
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ID, "--secret-key", SECRET])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let s3 = S3 {
            child: Some(child),
            port,
            root,
        };
        eventually(async || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
        Some(s3)
    }

    /// The `[cluster.store]` section for this server (secrets by variable).
    pub fn conf(&self) -> String {
        format!(
            "[cluster.store]\nendpoint = \"http://127.0.0.1:{}\"\nbucket = \"{BUCKET}\"\nprefix = \"t/\"\n\
             access_key_env = \"FC_S3_ID\"\nsecret_key_env = \"FC_S3_SECRET\"\ntimeout = \"3s\"\n",
            self.port
        )
    }

    /// The variables `conf` names.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [("FC_S3_ID", ID), ("FC_S3_SECRET", SECRET)]
    }

    /// The objects feedcache has stored (their files on the server's disk).
    pub fn objects(&self) -> Vec<PathBuf> {
        let dir = self.root.path().join(BUCKET).join("t/entries");
        let Ok(list) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = list
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    }

    /// Stops the server (the bucket is then unreachable).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
