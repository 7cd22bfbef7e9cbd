//! The HTTPS listener: rustls with a configured certificate, HTTP/2 by ALPN,
//! and rewritten URLs that say https.

mod common;

use common::*;

#[tokio::test]
async fn https_listener_speaks_h2_and_rewrites_to_https() {
    let up = FakeUpstream::start().await;
    up.serve_nuget_index();
    up.set(
        "/v3-flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg",
        Behavior::bytes(blob(100_000, 21)),
    );
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    // An ephemeral port for the TLS listener, chosen the way feedcache does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("c.toml");
    std::fs::write(
        &conf,
        format!(
            "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let _proxy = Proxy::start(
        &up.index_url(),
        &dir.path().join("cache"),
        &["-c", conf.to_str().unwrap()],
    )
    .await;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .no_proxy()
        .timeout(STEP)
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");

    // The listener binds shortly after start-up; poll until it answers.
    let resp = within(async {
        loop {
            if let Ok(r) = client.get(format!("{base}/v3/index.json")).send().await {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let index = within(resp.text()).await.unwrap();
    assert!(
        index.contains(&format!("{base}/v3/flatcontainer/")),
        "rewritten to https: {index}"
    );
    let r = within(
        client
            .get(format!(
                "{base}/v3/flatcontainer/demo.pkg/1.0.0/demo.pkg.1.0.0.nupkg"
            ))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(within(r.bytes()).await.unwrap().len(), 100_000);
}
