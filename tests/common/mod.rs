//! Shared test harness: the real feedcache binary against a fake upstream.

#![allow(dead_code)]

pub mod nuget_exe;
pub mod proget;
pub mod s3;
pub mod tls;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[allow(unused_imports)]
pub use upstream::{Behavior, FakeUpstream};

/// Header fields to add to a request so that pingora's parser reads it:
/// more than the server reads in place (`server/request.rs`, 32).
pub fn pingora_padding() -> String {
    (0..40).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect()
}

/// Upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(30);

/// Runs a future under `STEP`, failing the test on timeout.
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// Polls until `check` holds (observable state, not a fixed sleep).
pub async fn eventually(mut check: impl AsyncFnMut() -> bool) {
    within(async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A free TCP port on 127.0.0.1, for servers that must be told their port
/// before they start (feedcache's TLS listener, cluster nodes, S3 servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Temp files (fills under way or left over) in a cache directory: they
/// live beside the entries, `data/ab/.fill-*`.
pub fn temp_files(cache_dir: &Path) -> usize {
    let Ok(fans) = std::fs::read_dir(cache_dir.join("data")) else {
        return 0;
    };
    fans.flatten()
        .filter_map(|fan| std::fs::read_dir(fan.path()).ok())
        .flat_map(|d| d.flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with(".fill-"))
        .count()
}

/// Every later write of the process fails with EFBIG, as on a full disk:
/// a file-size limit of 0 bytes (feedcache ignores SIGXFSZ).
pub fn forbid_writes(pid: u32) {
    let st = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--fsize=0"])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(st.success());
}

/// A running feedcache process; killed when dropped.
pub struct Proxy {
    child: Child,
    pub base: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts feedcache on an ephemeral port with the given upstream and cache dir.
    pub async fn start(index_url: &str, cache_dir: &Path, extra: &[&str]) -> Proxy {
        Self::start_with_env(index_url, cache_dir, extra, &[]).await
    }

    /// Starts feedcache with the TOML text `conf` as its config file, and its
    /// cache in `dir/name` (the file is `dir/name.toml`).
    pub async fn start_with_conf(index_url: &str, dir: &Path, name: &str, conf: &str) -> Proxy {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, conf).expect("write config");
        let file = file.to_str().expect("UTF-8 path").to_owned();
        Self::start(index_url, &dir.join(name), &["-c", &file]).await
    }

    /// Like `start`, with extra environment variables (secrets).
    pub async fn start_with_env(
        index_url: &str,
        cache_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        Self::start_on("127.0.0.1:0", index_url, cache_dir, extra, env).await
    }

    /// Like `start_with_env`, listening on `listen` (cluster nodes must know
    /// each other's addresses before they start).
    pub async fn start_on(
        listen: &str,
        index_url: &str,
        cache_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        let log = std::env::var("FEEDCACHE_TEST_LOG").unwrap_or_else(|_| "warn".into());
        Self::launch(
            listen,
            index_url,
            cache_dir,
            extra,
            env,
            &log,
            Stdio::inherit(),
        )
        .await
    }

    /// Like `start`, with the default log level (access log on) and the
    /// log written to `log_file`, as under a service manager.
    pub async fn start_logging_to(
        index_url: &str,
        cache_dir: &Path,
        log_file: &Path,
        extra: &[&str],
    ) -> Proxy {
        let file = std::fs::File::create(log_file).expect("create log file");
        let listen = "127.0.0.1:0";
        Self::launch(
            listen,
            index_url,
            cache_dir,
            extra,
            &[],
            "info",
            Stdio::from(file),
        )
        .await
    }

    async fn launch(
        listen: &str,
        index_url: &str,
        cache_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        log: &str,
        stderr: Stdio,
    ) -> Proxy {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedcache"));
        cmd.args(["--listen", listen, "--upstream", index_url])
            .arg("--cache-dir")
            .arg(cache_dir)
            .args(["--threads", "2"])
            .args(extra)
            .env("RUST_LOG", log)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn feedcache");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = within(line).await.expect("join").expect("read stdout");
        let base = line
            .trim()
            .strip_prefix("feedcache listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let proxy = Proxy { child, base };
        proxy.wait_ready().await;
        proxy
    }

    /// Polls /health until the listener answers (pingora binds after start-up).
    async fn wait_ready(&self) {
        let url = format!("{}/health", self.base);
        let c = client();
        within(async {
            loop {
                if let Ok(r) = c.get(&url).send().await {
                    if r.status() == 200 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `host:port` to open raw TCP connections to.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself (after SIGTERM), under `STEP`.
    pub async fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "feedcache did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process abruptly (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for tests (plain HTTP on loopback).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP)
        .build()
        .expect("client")
}

/// GET returning status, headers and full body.
pub async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = within(client().get(url).send()).await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = within(r.bytes()).await.expect("body").to_vec();
    (status, headers, body)
}

/// Deterministic pseudo-random bytes (incompressible enough for tests).
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
