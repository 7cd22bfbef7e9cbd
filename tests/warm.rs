//! `feedcache warm` against a real feedcache and a fake upstream: lock files
//! and lists read, duplicates fetched once, outcomes counted from the
//! server's `X-Cache`, exit codes for failures and usage errors.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

const ALPHA: &str = "/v3-flatcontainer/demo.alpha/1.0.0/demo.alpha.1.0.0.nupkg";
/// Named only as a transitive entry of the lock file.
const BETA: &str = "/v3-flatcontainer/demo.beta/2.1.0/demo.beta.2.1.0.nupkg";
const GAMMA: &str = "/v3-flatcontainer/demo.gamma/3.0.0-beta.1/demo.gamma.3.0.0-beta.1.nupkg";
/// Named in the list, absent upstream.
const MISSING: &str = "/v3-flatcontainer/demo.missing/9.9.9/demo.missing.9.9.9.nupkg";

/// Two target frameworks naming the same packages (in other spellings),
/// a project reference, and a transitive-only package.
const LOCK: &str = r#"{
  "version": 1,
  "dependencies": {
    "net8.0": {
      "Demo.Alpha": { "type": "Direct", "requested": "[1.0.0, )", "resolved": "1.0.0", "contentHash": "x" },
      "Demo.Beta": { "type": "Transitive", "resolved": "2.1.0", "contentHash": "y" },
      "My.Lib": { "type": "Project", "dependencies": { "Demo.Alpha": "[1.0.0, )" } }
    },
    "net48": {
      "demo.alpha": { "type": "Direct", "requested": "[1.0, )", "resolved": "1.0" },
      "Demo.Beta": { "type": "Transitive", "resolved": "2.1.0.0" }
    }
  }
}"#;

const LIST: &str = "# extra packages for the build
Demo.Alpha 1.0.0

pkg:nuget/Demo.Gamma@3.0.0-Beta.1
Demo.Missing 9.9.9   # not on the upstream
";

/// Runs `feedcache warm ARGS` to completion under the step timeout.
async fn warm(args: &[&str], files: &[&Path]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_feedcache"));
    cmd.arg("warm")
        .args(args)
        .args(files)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = within(cmd.output()).await.expect("run feedcache warm");
    eprintln!(
        "feedcache warm {args:?}: {}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn warms_each_package_once_then_finds_them_cached() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    for (i, path) in [ALPHA, BETA, GAMMA].into_iter().enumerate() {
        up.set(path, Behavior::bytes(blob(200_000 + i * 1000, i as u64)));
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&up.index_url(), &dir.path().join("cache"), &[]).await;
    let server = proxy.url("/v3/index.json");
    let lock = dir.path().join("packages.lock.json");
    let list = dir.path().join("list.txt");
    std::fs::write(&lock, LOCK).unwrap();
    std::fs::write(&list, LIST).unwrap();

    let out = warm(&["--server", &server], &[&lock, &list]).await;
    assert_eq!(out.status.code(), Some(1), "a package failed");
    assert_eq!(
        stdout(&out),
        "warm: 3 fetched, 0 already cached, 1 failed\n"
    );
    // stderr is not a terminal here: one plain line per package.
    let log = stderr(&out);
    for line in [
        "fetched Demo.Alpha 1.0.0",
        "fetched Demo.Beta 2.1.0",
        "fetched Demo.Gamma 3.0.0-Beta.1",
        "failed Demo.Missing 9.9.9: HTTP 404",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    for path in [ALPHA, BETA, GAMMA, MISSING] {
        assert_eq!(up.hits(path), 1, "{path}");
    }

    // Without the missing package: everything is cached, nothing is fetched.
    let before = up.total_hits();
    let list = dir.path().join("list2.txt");
    std::fs::write(&list, LIST.replace("Demo.Missing 9.9.9", "")).unwrap();
    let out = warm(
        &["--server", &server, "--concurrency", "2"],
        &[&lock, &list],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "warm: 0 fetched, 3 already cached, 0 failed\n"
    );
    assert!(stderr(&out).contains("cached Demo.Beta 2.1.0"));
    // The service index is metadata within its TTL: answered from the cache too.
    assert_eq!(up.total_hits(), before, "{:?}", up.paths());
}

#[tokio::test]
async fn bad_lines_are_failures_named_by_file_and_line() {
    // Straight against the fake upstream: no X-Cache, so "fetched".
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    up.set(ALPHA, Behavior::bytes(blob(1000, 7)));
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "Demo.Alpha 1.0\nJust.An.Id\nDemo.Beta 1.0.0.0.0\n").unwrap();
    let broken = dir.path().join("packages.lock.json");
    std::fs::write(&broken, "{\n \"dependencies\": {\n").unwrap();

    let out = warm(&["--server", &up.index_url()], &[&list, &broken]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "warm: 1 fetched, 0 already cached, 3 failed\n"
    );
    let log = stderr(&out);
    let list = list.display();
    for line in [
        format!("failed {list}:2: expected `Id Version`"),
        format!("failed {list}:3: invalid version"),
        format!("failed {}:3: not a valid lock file", broken.display()),
    ] {
        assert!(log.contains(&line), "no {line:?} in:\n{log}");
    }
    assert_eq!(up.hits(ALPHA), 1);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let up = FakeUpstream::start().await;
    // A service index without a flat container.
    up.set(
        "/v3/index.json",
        Behavior::json(
            r#"{"version":"3.0.0","resources":[{"@id":"{base}/q","@type":"SearchQueryService"}]}"#,
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "Demo.Alpha 1.0\n").unwrap();

    let out = warm(&["--server", &up.index_url()], &[&list]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no PackageBaseAddress/3.0.0"));

    let absent = dir.path().join("nope.txt");
    let out = warm(&["--server", &up.index_url()], &[&list, &absent]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    assert_eq!(
        up.total_hits(),
        1,
        "nothing fetched when a file is unreadable"
    );

    let out = warm(
        &["--server", &format!("{}/missing.json", up.base())],
        &[&list],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));

    // No files at all: clap's usage error.
    let out = warm(&[], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
}
