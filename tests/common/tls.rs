//! A self-signed certificate for `localhost` and the `[tls]` config section
//! that serves it, for the tests of feedcache's HTTPS listener.

/// Writes a fresh certificate and key into `dir` and returns the `[tls]`
/// section for them, the TLS port it names, and the certificate.
pub fn self_signed(dir: &std::path::Path) -> (String, u16, rcgen::CertifiedKey) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let port = super::free_port();
    let section = format!(
        "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    (section, port, ck)
}
