//! A real S3-compatible server on ephemeral 127.0.0.1 ports for the cluster
//! tests: Garage (a distributed S3 store) when installed, else s3s-fs (S3
//! over a directory). `scripts/deps.sh test` installs them into a fixed root,
//! once. Objects are read and damaged through the S3 API (object_store), so
//! the tests hold for either server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};

use super::{eventually, free_port, within};

/// The bucket every test uses.
pub const BUCKET: &str = "feedcache";
/// Garage wants its key IDs as `GK` + 24 hex digits, secrets as 64.
const ID: &str = "GK0123456789abcdef01234567";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The prefix the tests' nodes write under.
const PREFIX: &str = "t/";

/// Where `scripts/deps.sh` installs the tools it builds.
pub fn tools_root() -> PathBuf {
    std::env::var_os("FEEDCACHE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            Path::new(&home).join(".cache/feedcache-tools")
        })
}

/// Which server runs.
enum Kind {
    Garage,
    S3sFs,
}

/// A running S3 server with the bucket created; killed when dropped.
pub struct S3 {
    child: Option<Child>,
    pub port: u16,
    region: &'static str,
    _dir: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

impl S3 {
    /// Starts a server with an empty bucket; `None` (a skip) when neither
    /// server is installed, a failure when CI requires them.
    pub async fn start() -> Option<S3> {
        let bin = tools_root().join("bin");
        let kind = if bin.join("garage").exists() {
            Kind::Garage
        } else if bin.join("s3s-fs").exists() {
            Kind::S3sFs
        } else if std::env::var("FEEDCACHE_REQUIRE_E2E").as_deref() == Ok("1") {
            panic!("an S3 server (garage or s3s-fs) is required: run scripts/deps.sh test");
        } else {
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let s3 = match kind {
            Kind::Garage => start_garage(&bin.join("garage"), dir, port).await,
            Kind::S3sFs => start_s3s_fs(&bin.join("s3s-fs"), dir, port).await,
        };
        Some(s3)
    }

    /// The `[cluster.store]` section for this server (secrets by variable).
    pub fn conf(&self) -> String {
        format!(
            "[cluster.store]\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"{}\"\nbucket = \"{BUCKET}\"\n\
             prefix = \"{PREFIX}\"\naccess_key_env = \"FC_S3_ID\"\nsecret_key_env = \"FC_S3_SECRET\"\n\
             timeout = \"3s\"\n",
            self.port, self.region
        )
    }

    /// The variables `conf` names.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [("FC_S3_ID", ID), ("FC_S3_SECRET", SECRET)]
    }

    /// A client of the bucket, as the tests' own S3 client.
    fn client(&self) -> Arc<dyn ObjectStore> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", self.port))
            .with_region(self.region)
            .with_bucket_name(BUCKET)
            .with_access_key_id(ID)
            .with_secret_access_key(SECRET)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap();
        Arc::new(store)
    }

    /// The objects feedcache has stored.
    pub async fn objects(&self) -> Vec<object_store::path::Path> {
        use futures_util::StreamExt;
        let client = self.client();
        let prefix = object_store::path::Path::from(PREFIX);
        let list: Vec<_> = within(client.list(Some(&prefix)).collect()).await;
        let mut paths: Vec<_> = list.into_iter().map(|m| m.unwrap().location).collect();
        paths.sort();
        paths
    }

    /// Replaces every object with a copy whose last byte is flipped.
    pub async fn damage_all(&self) {
        let client = self.client();
        for path in self.objects().await {
            let bytes = within(async { client.get(&path).await?.bytes().await })
                .await
                .unwrap();
            let mut bad = bytes.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0xff;
            within(client.put(&path, bad.into())).await.unwrap();
        }
    }

    /// Stops the server (the bucket is then unreachable).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn start_s3s_fs(bin: &Path, dir: tempfile::TempDir, port: u16) -> S3 {
    std::fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ID, "--secret-key", SECRET])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let s3 = S3 {
        child: Some(child),
        port,
        region: "us-east-1",
        _dir: dir,
    };
    eventually(async || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    s3
}

/// A single-node Garage: its config, the server, a one-node layout, the
/// bucket and a key allowed on it (as `../shared/notes/s3-servers.md`).
async fn start_garage(bin: &Path, dir: tempfile::TempDir, port: u16) -> S3 {
    let rpc = free_port();
    let d = dir.path();
    let conf = d.join("garage.toml");
    std::fs::write(
        &conf,
        format!(
            "metadata_dir = \"{m}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{SECRET}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{port}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            m = d.join("meta").display(),
            data = d.join("data").display(),
        ),
    )
    .unwrap();
    let garage = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .env("GARAGE_CONFIG_FILE", &conf)
            .output()
            .expect("run garage");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let child = Command::new(bin)
        .arg("server")
        .env("GARAGE_CONFIG_FILE", &conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start garage");
    let s3 = S3 {
        child: Some(child),
        port,
        region: "garage",
        _dir: dir,
    };
    eventually(async || garage(&["status"]).0).await;
    let (ok, id) = garage(&["node", "id", "-q"]);
    assert!(ok, "garage node id");
    let id = id.trim().split('@').next().unwrap().to_owned();
    let steps: [&[&str]; 5] = [
        &["layout", "assign", "-z", "dc1", "-c", "1G", &id],
        &["layout", "apply", "--version", "1"],
        &["bucket", "create", BUCKET],
        &["key", "import", "--yes", "-n", "test-key", ID, SECRET],
        &[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "test-key",
        ],
    ];
    for step in steps {
        let (ok, out) = garage(step);
        assert!(ok, "garage {step:?}: {out}");
    }
    eventually(async || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    s3
}
