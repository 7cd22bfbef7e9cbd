//! Tests of the disk tier (`disk.rs`): writes, loads, replacement by
//! rename, temp files, and entries a power cut tore.

use super::super::entry::Freshness;
use super::super::load::read_at;
use super::*;

fn meta() -> Meta {
    super::super::entry::test_meta(Freshness::Immutable)
}

#[tokio::test]
async fn put_get_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path()).unwrap();
    let key = CacheKey::from("nuget/flat/a/1.0.0/a.1.0.0.nupkg".to_string());
    assert!(tier.get(&key).await.unwrap().is_none());
    tier.put(&key, &meta(), Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let e = tier.get(&key).await.unwrap().unwrap();
    assert_eq!(e.len, 5);
    assert_eq!(
        &read_at(e.file.clone(), e.offset, 5).await.unwrap()[..],
        b"hello"
    );
    assert_eq!(*e.meta, meta());

    assert_eq!(e.map.as_deref().unwrap(), b"hello");

    // Damage found after a restart (files are never rewritten in place
    // while running): the entry is dropped, not served.
    drop(e);
    std::fs::write(tier.path_for(&key), b"garbage that is not an entry").unwrap();
    let tier = DiskTier::open(dir.path()).unwrap();
    assert!(tier.get(&key).await.unwrap().is_none());
    assert!(!tier.path_for(&key).exists(), "corrupt entry removed");
}

#[tokio::test]
async fn new_entries_go_under_their_name_and_replacements_by_rename() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::open(dir.path()).unwrap();
    let key = CacheKey::from("nuget/flat/a/1.0.0/a.1.0.0.nupkg".to_string());
    let (name, path) = (name_for(&key), tier.path_for(&key));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !tier.index.ready() {
        assert!(std::time::Instant::now() < deadline, "index never ready");
        std::thread::yield_now();
    }
    let fan = path.parent().unwrap().to_path_buf();
    let mut inodes = Vec::new();
    for body in [&b"first"[..], b"second, longer"] {
        tier.put(&key, &meta(), Bytes::from_static(body))
            .await
            .unwrap();
        let e = tier.get(&key).await.unwrap().unwrap();
        assert_eq!(e.map.as_deref().unwrap(), body);
        // Only the entry itself: no temp file left beside it.
        assert_eq!(std::fs::read_dir(&fan).unwrap().count(), 1);
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        inodes.push(m.ino());
    }
    // A known name is replaced by rename (a new file), never rewritten
    // in place under readers' mappings.
    assert_ne!(inodes[0], inodes[1]);
    assert!(tier.create_new(&name, &path, b"x", b"").is_none());
    // A name on disk but not (yet) in the index is not overwritten.
    tier.index.remove(&name);
    assert!(tier.create_new(&name, &path, b"x", b"").is_none());
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inodes[1]);
}

/// A power cut tore an entry (body zeroed, length kept) that the next
/// run never loaded. That run's sync must not vouch for it: its start-up
/// scan checks the seal and removes it, so a third run cannot serve it.
#[tokio::test]
async fn an_entry_torn_before_a_run_is_checked_before_the_marker_moves() {
    use super::super::durable::Durability;
    let key = CacheKey::from("nuget/flat/a/1.0.0/a.1.0.0.nupkg".to_string());
    let made = tempfile::tempdir().unwrap();
    let maker = DiskTier::open(made.path()).unwrap();
    maker
        .put(&key, &meta(), Bytes::from(vec![7u8; 20_000]))
        .await
        .unwrap();
    let mut torn = std::fs::read(maker.path_for(&key)).unwrap();
    let len = torn.len();
    torn[len - 10_000..].fill(0);

    // The cut: the file is back with its length but not its data, last
    // written well before the next run, and no sync was recorded.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join(&name_for(&key)[..2]).join(name_for(&key));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &torn).unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(30);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    // The next run scans, writes something, and syncs.
    let second = Durability::open(dir.path());
    DiskIndex::default().rebuild(&data, ".fill-0badf00d-", &second);
    assert!(!path.exists(), "the torn entry is removed by the scan");
    second.written();
    second.sync_round();

    // A third run trusts what the marker covers; the torn body is gone.
    let third = DiskTier::open(dir.path()).unwrap();
    assert!(third.get(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn dropped_temp_leaves_nothing_and_open_removes_old_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let key = CacheKey::from("nuget/flat/a/1.0.0/a.1.0.0.nupkg".to_string());
    let fan = |tier: &DiskTier| tier.path_for(&key).parent().unwrap().to_path_buf();
    let count = |d: &Path| std::fs::read_dir(d).unwrap().count();
    let tier = DiskTier::open(dir.path()).unwrap();
    let t = tier.temp(&key).unwrap();
    t.write_at(b"partial", 0).unwrap();
    drop(t);
    assert_eq!(count(&fan(&tier)), 0);

    // The directory older versions kept temp files in goes at start
    // (left-over temp names: `index::tests`).
    std::fs::create_dir_all(dir.path().join("tmp/x")).unwrap();
    let _again = DiskTier::open(dir.path()).unwrap();
    assert!(!dir.path().join("tmp").exists());
}
