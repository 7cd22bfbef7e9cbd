//! Logging: plain text on stderr (colour only on a terminal), collected in
//! a shared buffer and written by a background thread in large blocks, so a
//! worker never waits for the log.
//!
//! The access log is one line per request. Written line by line on the
//! worker thread it cost about a fifth of the CPU of a cached hit, and a
//! per-line channel (tracing-appender) still half of that in thread
//! wake-ups (BENCHMARKS.md). Like nginx's `access_log ... buffer=64k
//! flush=1s`, lines are appended to one buffer; a full buffer is handed to
//! the writer thread, which also writes whatever is buffered every
//! `FLUSH_EVERY`. When the writer falls `QUEUE_BLOCKS` blocks behind (a
//! stalled stderr), lines are dropped rather than blocking a worker, and
//! counted (`feedcache_log_lines_dropped_total`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A block is handed to the writer thread when it reaches this size.
const BLOCK: usize = 64 * 1024;
/// Blocks waiting for the writer before lines are dropped.
const QUEUE_BLOCKS: usize = 64;
/// Longest time a line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The shared buffer and the way to the writer thread.
struct Sink {
    buf: Mutex<Vec<u8>>,
    tx: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Whether access lines are wanted, decided once in `init`: the filter is
/// fixed at start, and asking it per request (`tracing::enabled!` through
/// `EnvFilter`) cost about 1% of a c1 hit's user CPU.
static ACCESS: AtomicBool = AtomicBool::new(false);

/// What the formatter writes one event into.
struct SinkWriter(&'static Sink);

impl Write for SinkWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let sink = self.0;
        let mut buf = sink.buf.lock().unwrap_or_else(|p| p.into_inner());
        buf.extend_from_slice(line);
        if buf.len() >= BLOCK {
            let full = std::mem::replace(&mut *buf, Vec::with_capacity(BLOCK + 1024));
            drop(buf);
            if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) =
                sink.tx.try_send(full)
            {
                let lines = b.iter().filter(|&&c| c == b'\n').count();
                sink.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes handed-over blocks, and what is buffered every `FLUSH_EVERY`.
fn writer_thread(rx: Receiver<Vec<u8>>, sink: &'static Sink) {
    let mut err = std::io::stderr();
    loop {
        let block = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(block) => block,
            Err(RecvTimeoutError::Timeout) => {
                let mut buf = sink.buf.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::take(&mut *buf)
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Nowhere to report a failing stderr; the next block tries again.
        let _ = err.write_all(&block);
    }
}

/// Sets up logging to stderr; `RUST_LOG` overrides the default level (info).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (tx, rx) = sync_channel(QUEUE_BLOCKS);
    let sink = SINK.get_or_init(|| Sink {
        buf: Mutex::new(Vec::with_capacity(BLOCK + 1024)),
        tx,
        dropped: AtomicU64::new(0),
    });
    let spawned = std::thread::Builder::new()
        .name("feedcache-log".into())
        .spawn(move || writer_thread(rx, sink));
    if spawned.is_err() {
        // Without the thread nothing would ever be written: log directly.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(move || SinkWriter(sink))
            .try_init();
    }
    ACCESS.store(
        tracing::enabled!(target: "access", tracing::Level::INFO),
        Ordering::Relaxed,
    );
}

/// One request, as the access log records it.
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub cache: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub elapsed: std::time::Duration,
}

/// Whether access lines are wanted (`RUST_LOG` at `info` for `access`;
/// never before `init`).
pub fn access_enabled() -> bool {
    ACCESS.load(Ordering::Relaxed)
}

/// Logs one request. The line reads like every other log line, but is
/// formatted here in one pass into a reused buffer: through the generic
/// event formatter it cost ~6% of a cached hit's CPU (BENCHMARKS.md).
pub fn access(a: &Access<'_>) {
    let Some(sink) = SINK.get() else {
        // Logging went straight to stderr (no writer thread): use tracing.
        tracing::info!(target: "access", method = a.method, path = a.path, route = a.route,
            cache = a.cache, status = a.status, bytes = a.bytes,
            ms = a.elapsed.as_micros() as f64 / 1000.0);
        return;
    };
    thread_local! {
        static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        static STAMP: std::cell::RefCell<Stamp> = const { std::cell::RefCell::new(Stamp::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        STAMP.with_borrow_mut(|s| s.push(line, std::time::SystemTime::now()));
        let micros = a.elapsed.as_micros();
        line.push_str("  INFO access: method=");
        line.push_str(a.method);
        line.push_str(" path=");
        push_quoted(line, a.path);
        line.push_str(" route=");
        line.push_str(a.route);
        line.push_str(" cache=");
        line.push_str(a.cache);
        line.push_str(" status=");
        push_padded(line, u64::from(a.status), 0);
        line.push_str(" bytes=");
        push_padded(line, a.bytes, 0);
        line.push_str(" ms=");
        push_padded(line, u64::try_from(micros / 1000).unwrap_or(u64::MAX), 0);
        line.push('.');
        push_padded(line, (micros % 1000) as u64, 3);
        line.push('\n');
        let _ = SinkWriter(sink).write_all(line.as_bytes());
    });
}

/// The RFC 3339 time of access lines (`2026-12-02T10:45:12.123456Z`, as
/// `humantime::format_rfc3339_micros`), with the part up to the seconds
/// formatted once per second: formatting the whole date per line was a
/// fifth of the access log's cost.
struct Stamp {
    secs: u64,
    /// `2026-12-02T10:45:12` for `secs`.
    prefix: String,
}

impl Stamp {
    const fn new() -> Self {
        Stamp {
            secs: u64::MAX,
            prefix: String::new(),
        }
    }

    fn push(&mut self, line: &mut String, now: std::time::SystemTime) {
        use std::fmt::Write as _;
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if since.as_secs() != self.secs {
            self.secs = since.as_secs();
            self.prefix.clear();
            let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.secs);
            let _ = write!(self.prefix, "{}", humantime::format_rfc3339_seconds(whole));
            self.prefix.pop(); // the `Z`, which goes after the fraction
        }
        line.push_str(&self.prefix);
        line.push('.');
        push_padded(line, u64::from(since.subsec_micros()), 6);
        line.push('Z');
    }
}

/// `n` in decimal, zero-padded to `width` digits, by `itoa`: the
/// formatting machinery of `write!` was a visible part of each line's cost.
fn push_padded(line: &mut String, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        line.push('0');
    }
    line.push_str(digits);
}

/// `s` in double quotes as `{:?}` writes it; a path of printable ASCII
/// without quotes or backslashes (nearly every one) is copied as it is,
/// instead of going through the char-by-char escaper.
fn push_quoted(line: &mut String, s: &str) {
    use std::fmt::Write as _;
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        line.push('"');
        line.push_str(s);
        line.push('"');
    } else {
        let _ = write!(line, "{s:?}");
    }
}

/// Writes out whatever is buffered now (before the process exits).
pub fn flush() {
    if let Some(sink) = SINK.get() {
        let block = std::mem::take(&mut *sink.buf.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = std::io::stderr().write_all(&block);
    }
}

/// Log lines dropped because the writer thread fell behind.
pub fn dropped_lines() -> u64 {
    SINK.get().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_as_debug_writes_it() {
        for s in [
            "/v3/index.json",
            "/v3/flatcontainer/a/1.0.0/a.1.0.0.nupkg?x=1&y=%20",
            "",
            "with \"quotes\"",
            "back\\slash",
            "tab\there",
            "new\nline",
            "\u{1b}[31mred",
            "ünïcödé",
            "del\u{7f}",
        ] {
            let mut line = String::new();
            push_quoted(&mut line, s);
            assert_eq!(line, format!("{s:?}"), "{s:?}");
        }
    }

    #[test]
    fn padded_matches_format() {
        for (n, width) in [
            (0, 0),
            (0, 3),
            (7, 3),
            (999, 3),
            (1000, 3),
            (42, 6),
            (u64::MAX, 0),
        ] {
            let mut line = String::from("x");
            push_padded(&mut line, n, width);
            assert_eq!(line, format!("x{n:0width$}"), "{n} {width}");
        }
    }

    #[test]
    fn stamp_matches_humantime_across_seconds() {
        let mut stamp = Stamp::new();
        let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_207_598);
        for micros in [0u64, 1, 999_999, 1_000_000, 1_000_001, 86_400_000_000, 7] {
            let t = base + std::time::Duration::from_micros(micros);
            let mut line = String::new();
            stamp.push(&mut line, t);
            assert_eq!(
                line,
                humantime::format_rfc3339_micros(t).to_string(),
                "{micros}"
            );
        }
    }
}
