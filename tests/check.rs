//! `feedcache --check`: a good file passes, a bad one fails with a readable message.

use std::process::Command;

fn check(conf: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, conf).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_feedcache"))
        .args(["--check", "-c"])
        .arg(&f)
        .envs(env.iter().copied())
        .output()
        .expect("run feedcache --check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The shipped configurations pass `--check`: the default one as it is, the
/// cluster example with its secrets given and its cache directory moved
/// somewhere writable.
#[test]
fn shipped_configs_pass() {
    let dir = tempfile::tempdir().unwrap();
    let secrets: &[(&str, &str)] = &[
        ("FEEDCACHE_CLUSTER_SECRET", "s"),
        ("FEEDCACHE_S3_ACCESS_KEY", "id"),
        ("FEEDCACHE_S3_SECRET_KEY", "secret"),
    ];
    type Env<'a> = &'a [(&'a str, &'a str)];
    let table: [(&str, Env, bool); 2] = [
        ("feedcache.toml", &[], false),
        ("cluster.toml", secrets, true),
    ];
    for (file, env, own_dir) in table {
        let conf = format!("{}/conf/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedcache"));
        cmd.args(["--check", "-c", &conf]).envs(env.iter().copied());
        if own_dir {
            cmd.arg("--cache-dir").arg(dir.path());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bad_configs_fail_with_a_message() {
    let table = [
        ("bogus = 1\n", "unknown field"),
        ("[cache]\nmemory_size = \"0B\"\n", "cache.memory_size"),
        ("[nuget]\nservice_index = \"ftp://x/\"\n", "scheme"),
        (
            "[proget]\nurl = \"http://p/\"\napi_key_env = \"FC_CHECK_UNSET\"\n",
            "FC_CHECK_UNSET",
        ),
        ("listen = \"nowhere\"\n", "listen"),
        (
            "[cluster]\npeers = [{ addr = \"127.0.0.1:1\" }]\n",
            "mark exactly one peer",
        ),
        (
            "[cluster]\npeers = [{ addr = \"127.0.0.1:1\", me = true }]\n",
            "shared secret",
        ),
        ("[cluster.store]\nbucket = \"b\"\n", "needs an access key"),
        (
            "[[feeds]]\nname = \"x\"\nupstreams = [{ source = \"proget:internal\" }]\n",
            "proget.url",
        ),
    ];
    for (conf, want) in table {
        let (ok, text) = check(conf, &[]);
        assert!(!ok, "{conf:?} passed");
        assert!(text.contains(want), "{conf:?}: {text:?} lacks {want:?}");
    }
    let (ok, text) = check(
        "[proget]\nurl = \"http://p/\"\napi_key_env = \"FC_CHECK_SET\"\n",
        &[("FC_CHECK_SET", "k")],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("FC_CHECK_SET=k"));
}

/// A listen address already in use stops start-up at once, with one line
/// naming the address, and nothing claims to be listening (issue #13).
#[test]
fn a_port_in_use_fails_start_up_at_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_feedcache"))
        .args(["--listen", &addr, "--cache-dir"])
        .arg(dir.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded wait: the old behaviour was to retry for 30 s and live on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("feedcache still running with its port taken");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!status.success());
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    drop(taken);
}

/// `--check` also proves the cache directory usable (issue #13).
#[test]
fn check_refuses_a_cache_dir_that_cannot_be_created() {
    let (ok, text) = check("[cache]\ndir = \"/dev/null/cache\"\n", &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("cache.dir") && text.contains("/dev/null/cache"),
        "{text}"
    );
}
