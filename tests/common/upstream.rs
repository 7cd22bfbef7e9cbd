//! A fake upstream for integration tests: raw HTTP/1.1 on an ephemeral port,
//! counting requests per path, with scripted faults (truncation, gates).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How the fake answers one path.
#[derive(Clone)]
pub enum Behavior {
    /// A normal response. `{base}` in the body becomes the upstream's base URL.
    Ok {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Declares `declared` bytes, sends `body`, then closes the connection.
    Truncate { declared: usize, body: Vec<u8> },
    /// Sends the headers and the first `split` bytes, waits for the gate, then the rest.
    Gated {
        body: Vec<u8>,
        split: usize,
        gate: Arc<Notify>,
    },
    /// Waits, then answers as the inner behavior (a slow upstream).
    Slow(std::time::Duration, Box<Behavior>),
    /// Closes the connection without answering (a reset).
    Reset,
    /// No Content-Length: sends `body` and closes (a close-delimited body,
    /// complete or cut short: the client cannot tell).
    CloseDelimited(Vec<u8>),
}

impl Behavior {
    pub fn json(body: impl Into<Vec<u8>>) -> Self {
        Behavior::Ok {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Behavior::Ok {
            status: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: body.into(),
        }
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Behavior>,
    /// Requests per path (with query).
    hits: HashMap<String, usize>,
    /// Last If-None-Match seen per path.
    inm: HashMap<String, String>,
    /// User-Agent of every request, in order.
    agents: Vec<String>,
    /// X-ApiKey of every request, in order.
    api_keys: Vec<Option<String>>,
    /// When set, requests without this X-ApiKey get 403 (like ProGet).
    required_key: Option<String>,
    /// When set, every request is answered by closing the connection.
    down: bool,
}

/// The running fake upstream; stops when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st, addr).await;
                });
            }
        });
        FakeUpstream { addr, state, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn index_url(&self) -> String {
        format!("{}/v3/index.json", self.base())
    }

    pub fn set(&self, path: &str, b: Behavior) {
        self.state.lock().unwrap().routes.insert(path.to_owned(), b);
    }

    /// Requests to any path so far.
    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// User-Agent headers of all requests so far.
    /// Every path requested so far, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut p: Vec<String> = self.state.lock().unwrap().hits.keys().cloned().collect();
        p.sort();
        p
    }

    pub fn agents(&self) -> Vec<String> {
        self.state.lock().unwrap().agents.clone()
    }

    /// X-ApiKey headers of all requests so far (`None` where absent).
    pub fn api_keys(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().api_keys.clone()
    }

    /// Takes the upstream down: every request gets its connection closed
    /// without an answer. `false` brings it back.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Stops listening (new connections are refused) and closes the ones
    /// already open at their next request.
    pub fn refuse(&self) {
        self.set_down(true);
        self.task.abort();
    }

    /// Answers 403 to every request without this `X-ApiKey`.
    pub fn require_key(&self, key: &str) {
        self.state.lock().unwrap().required_key = Some(key.to_owned());
    }

    pub fn last_if_none_match(&self, path: &str) -> Option<String> {
        self.state.lock().unwrap().inm.get(path).cloned()
    }

    /// A nuget.org-like service index whose resources all live on this upstream.
    pub fn serve_nuget_index(&self) {
        self.set("/v3/index.json", Behavior::json(SERVICE_INDEX));
    }
}

/// A ProGet NuGet feed's service index (feed `internal`).
pub const PROGET_INDEX: &str = r#"{"version":"3.0.0","resources":[
 {"@id":"{base}/nuget/internal/v3/flatcontainer/","@type":"PackageBaseAddress/3.0.0"},
 {"@id":"{base}/nuget/internal/v3/registrations/","@type":"RegistrationsBaseUrl"},
 {"@id":"{base}/nuget/internal/v3/registrations/","@type":"RegistrationsBaseUrl/3.0.0-beta"},
 {"@id":"{base}/nuget/internal/v3/registrations/","@type":"RegistrationsBaseUrl/3.4.0"},
 {"@id":"{base}/nuget/internal/v3/registrations/","@type":"RegistrationsBaseUrl/3.6.0"},
 {"@id":"{base}/nuget/internal/v3/search","@type":"SearchQueryService/3.5.0"},
 {"@id":"{base}/nuget/internal/v3/package","@type":"PackagePublish/2.0.0"}
]}"#;

/// Resource layout like nuget.org's (every registration type NuGet clients
/// look for), with a second search instance and resources feedcache must drop.
pub const SERVICE_INDEX: &str = r#"{"version":"3.0.0","resources":[
 {"@id":"{base}/query","@type":"SearchQueryService","comment":"primary"},
 {"@id":"{base}/query2","@type":"SearchQueryService/3.5.0"},
 {"@id":"{base}/autocomplete","@type":"SearchAutocompleteService"},
 {"@id":"{base}/v3/registration5-semver1/","@type":"RegistrationsBaseUrl"},
 {"@id":"{base}/v3/registration5-semver1/","@type":"RegistrationsBaseUrl/3.0.0-rc"},
 {"@id":"{base}/v3/registration5-semver1/","@type":"RegistrationsBaseUrl/3.0.0-beta"},
 {"@id":"{base}/v3/registration5-gz-semver1/","@type":"RegistrationsBaseUrl/3.4.0"},
 {"@id":"{base}/v3/registration5-gz-semver2/","@type":"RegistrationsBaseUrl/3.6.0"},
 {"@id":"{base}/v3/registration5-gz-semver2/","@type":"RegistrationsBaseUrl/Versioned","clientVersion":"4.3.0-alpha"},
 {"@id":"{base}/v3-flatcontainer/","@type":"PackageBaseAddress/3.0.0"},
 {"@id":"{base}/api/v2/package","@type":"PackagePublish/2.0.0"},
 {"@id":"{base}/v3/catalog0/index.json","@type":"Catalog/3.0.0"}
],"@context":{"@vocab":"http://schema.nuget.org/services#"}}"#;

async fn serve(sock: TcpStream, st: Arc<Mutex<State>>, addr: SocketAddr) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut inm = None;
        let mut agent = String::new();
        let mut api_key = None;
        let mut content_len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "if-none-match" => inm = Some(v.trim().to_owned()),
                    "content-length" => content_len = v.trim().parse().unwrap_or(0),
                    "user-agent" => agent = v.trim().to_owned(),
                    "x-apikey" => api_key = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let mut sink = vec![0u8; content_len];
        r.read_exact(&mut sink).await?;

        let (behavior, refused) = {
            let mut s = st.lock().unwrap();
            *s.hits.entry(target.clone()).or_default() += 1;
            s.agents.push(agent);
            s.api_keys.push(api_key.clone());
            let refused = s.required_key.is_some() && s.required_key != api_key;
            if let Some(v) = &inm {
                s.inm.insert(target.clone(), v.clone());
            }
            let path = target.split('?').next().unwrap_or("").to_owned();
            let b = if s.down {
                Some(Behavior::Reset)
            } else {
                s.routes
                    .get(&target)
                    .or_else(|| s.routes.get(&path))
                    .cloned()
            };
            (b, refused)
        };
        let base = format!("http://{addr}");
        let mut behavior = behavior;
        while let Some(Behavior::Slow(delay, inner)) = behavior {
            tokio::time::sleep(delay).await;
            behavior = Some(*inner);
        }
        if matches!(behavior, Some(Behavior::Reset)) {
            return Ok(());
        }
        if refused {
            write_simple(&mut w, 403, &[], b"bad key").await?;
            continue;
        }
        match behavior {
            None => write_simple(&mut w, 404, &[], b"not found").await?,
            Some(Behavior::Ok {
                status,
                headers,
                body,
            }) => {
                let body = substitute(&body, &base);
                let etag = format!("\"{:x}\"", fxhash(&body));
                if inm.as_deref() == Some(etag.as_str()) && status == 200 {
                    let h = vec![("ETag".to_owned(), etag)];
                    write_head(&mut w, 304, &h, None).await?;
                } else {
                    let mut h = headers.clone();
                    if !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("etag")) {
                        h.push(("ETag".into(), etag));
                    }
                    write_simple(&mut w, status, &h, &body).await?;
                }
            }
            Some(Behavior::Truncate { declared, body }) => {
                write_head(&mut w, 200, &[], Some(declared)).await?;
                w.write_all(&body).await?;
                w.flush().await?;
                return Ok(()); // close mid-body
            }
            Some(Behavior::Reset) => return Ok(()),
            Some(Behavior::CloseDelimited(body)) => {
                write_head(&mut w, 200, &[], None).await?;
                w.write_all(&body).await?;
                w.flush().await?;
                return Ok(());
            }
            Some(Behavior::Slow(..)) => unreachable!("unwrapped above"),
            Some(Behavior::Gated { body, split, gate }) => {
                write_head(&mut w, 200, &[], Some(body.len())).await?;
                w.write_all(&body[..split]).await?;
                w.flush().await?;
                gate.notified().await;
                w.write_all(&body[split..]).await?;
                w.flush().await?;
            }
        }
    }
}

fn substitute(body: &[u8], base: &str) -> Vec<u8> {
    match std::str::from_utf8(body) {
        Ok(s) if s.contains("{base}") => s.replace("{base}", base).into_bytes(),
        _ => body.to_vec(),
    }
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100000001b3)
    })
}

async fn write_head(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    status: u16,
    headers: &[(String, String)],
    len: Option<usize>,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = len {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes()).await
}

async fn write_simple(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let has_len = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    write_head(w, status, headers, (!has_len).then_some(body.len())).await?;
    w.write_all(body).await?;
    w.flush().await
}
