"""Plumbing for benches/load.py: the origin's files, server configurations,
child processes, CPU accounting from /proc, and the wrk/curl drivers.
Python 3 standard library only; everything talks to 127.0.0.1."""

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MB = 1024 * 1024
# Hit sizes: label -> (package id, bytes); "index" is the flat container's
# version list (package "pkg"), a small JSON document.
SIZES = {"index": ("pkg", None), "10k": ("p10k", 10 * 1024),
         "1m": ("p1m", MB), "50m": ("p50m", 50 * MB)}
COLD_SIZE = 10 * 1024   # every cold*/herd* id maps to one template file at the origin
HERD_SIZE = 50 * MB
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Abort(Exception):
    """A target answered wrongly; numbers from it would be meaningless."""


# ---------------------------------------------------------------- origin

def make_origin(w):
    """Writes the origin's tree and returns the bytes of the version list."""
    o = os.path.join(w, "origin")
    flat = os.path.join(o, "v3-flatcontainer")
    os.makedirs(os.path.join(o, "v3"))
    os.makedirs(os.path.join(o, "tmpl"))
    rnd = os.urandom(50 * MB)  # incompressible, so no layer can cheat
    for pid, size in SIZES.values():
        d = os.path.join(flat, pid, "1.0.0")
        os.makedirs(d)
        if size:
            with open(os.path.join(d, f"{pid}.1.0.0.nupkg"), "wb") as f:
                f.write(rnd[:size])
    index = ('{"versions":[' + ",".join(f'"1.0.{i}"' for i in range(16)) + "]}").encode()
    with open(os.path.join(flat, "pkg", "index.json"), "wb") as f:
        f.write(index)  # 148 bytes
    with open(os.path.join(o, "tmpl", "cold.nupkg"), "wb") as f:
        f.write(rnd[:COLD_SIZE])
    os.link(os.path.join(flat, "p50m", "1.0.0", "p50m.1.0.0.nupkg"),
            os.path.join(o, "tmpl", "herd.nupkg"))
    return index


def service_index(w, origin_port):
    with open(os.path.join(w, "origin", "v3", "index.json"), "w") as f:
        f.write('{"version":"3.0.0","resources":[{"@id":"http://127.0.0.1:%d/v3-flatcontainer/",'
                '"@type":"PackageBaseAddress/3.0.0"}]}' % origin_port)


# ---------------------------------------------------------------- configs

def nginx_conf(w, role, port, origin_port):
    """One nginx instance per role (origin, static, cache), so that /proc
    CPU accounting of one never includes the work of another."""
    d = os.path.join(w, f"ngx-{role}")
    os.makedirs(d)
    if role == "origin":  # logs only the URI, to count origin fetches per key
        server = f"""
    root {w}/origin;
    access_log {d}/access.log uri;
    location ~ ^/v3-flatcontainer/cold[^/]*/ {{ try_files /tmpl/cold.nupkg =404; }}
    location ~ ^/v3-flatcontainer/herd[^/]*/ {{ try_files /tmpl/herd.nupkg =404; }}"""
    elif role == "static":  # the physical-limit reference: same files, sendfile
        server = f"""
    root {w}/origin;
    access_log {d}/access.log;"""
    else:  # the competitor: proxy_cache on disk with a cache lock for herds
        # nginx core cannot lowercase a variable (that takes perl/lua modules),
        # so the key is the request URI as sent; every URL in this benchmark
        # is lowercase already, so it equals the lowercased key of the others.
        server = f"""
    access_log {d}/access.log;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache pc;
      proxy_cache_key $request_uri;
      proxy_cache_valid 200 1d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 120s;
      proxy_cache_lock_age 120s;
    }}"""
    cache = "" if role != "cache" else f"""
  proxy_cache_path {d}/cache levels=1:2 keys_zone=pc:64m max_size=20g inactive=1d use_temp_path=off;
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}"""
    conf = f"""
worker_processes 2;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  log_format uri '$request_uri';{cache}
  server {{
    listen 127.0.0.1:{port} backlog=4096;{server}
  }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return ["nginx", "-c", path, "-p", d, "-g", "daemon off;"]


def varnish_cmd(w, port, origin_port):
    """varnishd in the foreground (-F) with its own working dir. It logs to
    its shared-memory log by design (varnishncsa would read it); no access
    log file is written, which is how Varnish runs in production too."""
    vcl = os.path.join(w, "cache.vcl")
    with open(vcl, "w") as f:
        f.write(f"""vcl 4.1;
import std;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
sub vcl_hash {{
  # The lowercased URL, like feedcache's keys; no Host in the key.
  hash_data(std.tolower(req.url));
  return (lookup);
}}
sub vcl_backend_response {{
  # The origin sends no Cache-Control: keep everything for the whole run.
  set beresp.ttl = 1d;
  set beresp.grace = 0s;
}}
""")
    return ["varnishd", "-F", "-n", os.path.join(w, "varnish"), "-a", f"127.0.0.1:{port}",
            "-T", "127.0.0.1:0", "-f", vcl, "-s", "malloc,256m",
            # Room for a 50 MB object in a store full of 10 KB cold entries
            # means evicting ~5000 of them; with the default limit of 50 the
            # fetch fails and clients get a truncated 200.
            "-p", "nuke_limit=100000"]


VARNISH_COUNTERS = ["cache_hit", "cache_miss", "fetch_failed", "n_lru_nuked", "n_lru_limited"]


def varnish_counters(w):
    """Varnish's own view of the run, to spot failed fetches or evictions."""
    cmd = ["varnishstat", "-1", "-t", "5", "-n", os.path.join(w, "varnish")]
    for c in VARNISH_COUNTERS:
        cmd += ["-I", f"MAIN.{c}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    return {line.split()[0][5:]: int(line.split()[1]) for line in out.splitlines() if line.startswith("MAIN.")}


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_table():
    """pid -> (ppid, utime + stime in ticks) for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()  # comm may contain spaces
        table[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return table


def tree(root, table=None):
    """root and all its descendants (nginx workers, varnish's cache child)."""
    table = table or _proc_table()
    pids, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            pids.append(p)
            todo += [c for c, (pp, _) in table.items() if pp == p]
    return pids


def cpu_seconds(roots):
    """Summed user+system CPU of the process trees under roots."""
    table = _proc_table()
    return sum(table[p][1] for r in roots for p in tree(r, table)) / CLK_TCK


class Procs:
    """The servers we start. Each gets its own session so that Ctrl-C reaches
    only us and we stop them in order; stop() signals exactly the pids we
    started or their descendants, never anything by name."""

    def __init__(self, w):
        self.w, self.started = w, []

    def start(self, name, argv, env=None):
        out = open(os.path.join(self.w, f"{name}.out"), "wb")
        err = open(os.path.join(self.w, f"{name}.err"), "wb")  # a file: never fills
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
        self.started.append((name, p))
        return p

    def check_alive(self):
        for name, p in self.started:
            if p.poll() is not None:  # 0 here means a clean stop on a signal from someone
                how = f"signal {-p.returncode}" if p.returncode < 0 else f"status {p.returncode}"
                raise Abort(f"{name} exited ({how}) during the run; see {self.w}/{name}.err")

    def stop(self):
        pids = {p.pid: tree(p.pid) for _, p in self.started}
        for _, p in self.started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.started:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for kids in pids.values():  # children that outlived their parent
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass


# ---------------------------------------------------------------- clients

def curl(url, body=False, timeout=60):
    """(status, size, body or None) of one GET."""
    r = subprocess.run(["curl", "-s", "--max-time", str(timeout), "-o", "-" if body else "/dev/null",
                        "-w", "\n%{http_code} %{size_download}", url],
                       capture_output=True, timeout=timeout + 10)
    head, _, tail = r.stdout.rpartition(b"\n")
    code, size = (tail.decode().split() + ["0", "0"])[:2]
    return int(code), int(size), head if body else None


def wait_http(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if curl(url, timeout=2)[0] == 200:
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.2)
    raise Abort(f"not answering 200 within {timeout}s: {url}")


def parse_wrk(out):
    def num(pattern, units=None):
        m = re.search(pattern, out)
        if not m:
            return None
        return float(m.group(1)) * (units or {}).get(m.group(m.lastindex), 1)

    t = {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}
    b = {"B": 1 / MB, "KB": 1 / 1024, "MB": 1, "GB": 1024}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(num(r"(\d+) requests in") or 0),
        "mb_read": num(r"requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", b),
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": num(r"\s50%\s+([\d.]+)(us|ms|s|m)\b", t),
        "p99_ms": num(r"\s99%\s+([\d.]+)(us|ms|s|m)\b", t),
        "mb_s": num(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", b),
        "non2xx": int(num(r"Non-2xx or 3xx responses:\s+(\d+)") or 0),
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def wrk(url, conns, seconds, script=None, args=(), body=None):
    """One wrk run. With body (bytes) of 1 MB or more, requests and req/s are
    bytes read / body: wrk counts only completed requests, and 64 parallel
    50 MB downloads complete their first one only after about a second,
    which would undercount a run of a few seconds by a third. client_cpu_s is
    wrk's own CPU time: on loopback the kernel work of a transfer is split
    between server and client by who copies, so the two are read together."""
    cmd = ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    cmd += ["-s", script] if script else []
    cmd += [url] + (["--", *args] if args else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse_wrk(out)
    r["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if body and body >= MB and r["mb_read"]:
        r["requests"] = r["mb_read"] * MB / body
        r["rps"] = r["mb_s"] * MB / body
    if r["rps"] is None or not r["requests"]:
        raise Abort(f"wrk completed no requests against {url}:\n{out}")
    return r


# wrk script for cold misses: every request a new package id under a prefix
# that is unique per target and round, so every request is a miss.
# (tid must stay a global: thread:set() writes globals, and a local of that
# name would shadow it, giving every thread the same ids and half the
# requests hits.)
COLD_LUA = """
local threads, n = 0, 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) prefix = args[1]; flat = args[2] end
function request()
  n = n + 1
  local id = prefix .. "t" .. tid .. "n" .. n
  return wrk.format("GET", flat .. id .. "/1.0.0/" .. id .. ".1.0.0.nupkg")
end
"""


def herd(w, url, clients, size):
    """clients simultaneous downloads of url; (seconds to the last byte,
    number of complete 200s). url may be a list: client i then gets
    url[i % len(url)] (one herd spread over several nodes). curl -Z runs at
    most 300 transfers at once, so larger herds are split over several curl
    processes."""
    urls = [url] if isinstance(url, str) else list(url)
    procs, per = [], 200
    start = time.monotonic()
    for i in range(0, clients, per):
        n = min(per, clients - i)
        cfg = os.path.join(w, f"herd{i}.curl")
        with open(cfg, "w") as f:
            f.write("".join(f'url = "{urls[(i + j) % len(urls)]}"\noutput = "/dev/null"\n' for j in range(n)))
        procs.append(subprocess.Popen(
            ["curl", "-s", "--no-progress-meter", "-Z", "--parallel-max", str(n), "--parallel-immediate", "--max-time", "120",
             "-w", "%{http_code} %{size_download}\n", "-K", cfg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    outs = [p.communicate(timeout=180)[0] for p in procs]
    elapsed = time.monotonic() - start
    ok = sum(1 for out in outs for line in out.splitlines() if line.split() == ["200", str(size)])
    return elapsed, ok


class OriginLog:
    """Counts origin requests (from its URI-only access log) since a mark."""

    def __init__(self, path):
        self.path, self.offset = path, 0

    def mark(self):
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def count(self, needle):
        """Lines (requests) since the mark that contain needle."""
        needle = needle.encode()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return sum(1 for line in f if needle in line)

    def fetches(self, needle):
        """(requests, distinct URIs) since the mark that contain needle:
        requests ÷ distinct is the origin fetches per key."""
        needle = needle.encode()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            lines = [line.strip() for line in f if needle in line]
        return len(lines), len(set(lines))


class RssSampler:
    """Peak anonymous and file-backed RSS of one process, every 100 ms:
    VmHWM also counts mapped page cache, which the kernel can drop."""

    def __init__(self, pid):
        self.pid, self.anon, self.file = pid, 0.0, 0.0
        self.stop = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop.wait(0.1):
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            self.anon = max(self.anon, int(line.split()[1]) / 1024)
                        elif line.startswith("RssFile:"):
                            self.file = max(self.file, int(line.split()[1]) / 1024)
            except OSError:
                return


# ---------------------------------------------------------------- statistics

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratios(a, b):
    """Per-round a/b where both rounds exist."""
    return [x / y for x, y in zip(a, b) if x is not None and y]


def f(v, digits=0):
    return "-" if v is None else f"{v:.{digits}f}"


def table(headers, rows):
    """A markdown table padded for reading in a terminal."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    width = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, width)) + " |"
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in width) + "|")
    for r in cells[1:]:
        print(line(r))
    print()


# ---------------------------------------------------------------- the frame of a run

# This machine's ext4 has no journal, and without one ext4 does not reuse an
# inode freed in the last 60 s, 360 s while its inode-table block is not yet
# written back (fs/ext4/ialloc.c, `recently_deleted`): every file create scans
# past those. The ~150,000 cache files a run deletes at its end made the next
# run's cold misses several times dearer for minutes (nginx-cache 150-520 µs
# per miss instead of 50-70, 72% of its samples in that scan), for whichever
# target's directories landed in those inode groups. So a run that times cold
# misses waits until the last run's deletions are that old (`settle`).
SETTLE_S = 360
DELETED_MARK = os.path.join(tempfile.gettempdir(), "feedcache-bench.deleted")


def settle(seconds=SETTLE_S):
    """Sleeps until the last bench run's clean-up is `seconds` old."""
    try:
        age = time.time() - os.stat(DELETED_MARK).st_mtime
    except OSError:
        return
    if 0 <= age < seconds:
        print(f"waiting {seconds - age:.0f} s: the last bench run deleted its cache files "
              f"{age:.0f} s ago, and until {seconds} s have passed file creates on ext4 without "
              "a journal skew cold misses (--no-settle skips this)", flush=True)
        time.sleep(seconds - age)


def run_bench(a, prefix, body):
    """Runs `body(w, procs)` in a fresh work dir `w` (readable by the
    servers' other users) and exits: every server is stopped and the dir
    removed (unless --keep) however the run ends, the document `body`
    returns ({"meta": ..., ...}) goes to --json, the exit code is 0, 1 on an
    Abort (the logs are kept), 130 on Ctrl-C. A run with cold misses first
    waits out the last one's clean-up (`settle`), unless --no-settle."""
    cold = "cold" in getattr(a, "scenarios", ())
    if cold and not getattr(a, "no_settle", False):
        settle()
    start = time.monotonic()
    w = tempfile.mkdtemp(prefix=prefix)
    os.chmod(w, 0o755)  # nginx workers and varnish's child run as other users
    procs = Procs(w)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # unwind through finally: stop servers
        signal.signal(sig, lambda n, _: sys.exit(128 + n))
    rc = 0
    try:
        doc = body(w, procs)
        doc["meta"]["wall_seconds"] = time.monotonic() - start  # without the clean-up below
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(doc, fh, indent=1)
    except Abort as e:
        print(f"\nABORTED: {e}", file=sys.stderr)
        rc, a.keep = 1, True  # keep the logs the message points to
    except KeyboardInterrupt:
        rc = 130
    finally:
        procs.stop()
        if a.keep:
            print(f"kept {w}")
        else:
            shutil.rmtree(w, ignore_errors=True)  # seconds: many cached cold entries
            if cold:  # only cold runs leave many files
                with open(DELETED_MARK, "w"):  # its time is what `settle` reads
                    pass
    print(f"total wall time {time.monotonic() - start:.0f} s (with start-up and clean-up)")
    sys.exit(rc)
