#!/usr/bin/env python3
"""Load benchmark: feedcache vs nginx proxy_cache vs nginx serving the files
statically (the physical-limit reference), all on 127.0.0.1, in one run.

Run it through benches/load.sh, which installs nginx, wrk and curl and builds
feedcache in release mode. Every measurement is bounded in time; targets are
interleaved within each round so that machine noise hits all of them alike.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEEDCACHE = os.path.join(ROOT, "target", "release", "feedcache")

SIZES = [  # label, package id, bytes (index.json is the version list)
    ("index.json", None, None),
    ("10KB", "p10k", 10 * 1024),
    ("1MB", "p1m", 1024 * 1024),
    ("50MB", "p50m", 50 * 1024 * 1024),
]
TARGETS = ["feedcache", "nginx-proxy", "nginx-static"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["curl", "-sf", "-o", "/dev/null", "--max-time", "2", url])
        if r.returncode == 0:
            return
        time.sleep(0.1)
    sys.exit(f"not answering: {url}")


def make_origin(w):
    o = os.path.join(w, "origin")
    flat = os.path.join(o, "v3-flatcontainer")
    os.makedirs(os.path.join(o, "v3"))
    os.makedirs(os.path.join(o, "tmpl"))
    rnd = os.urandom(50 * 1024 * 1024)
    for _, pid, size in SIZES[1:]:
        d = os.path.join(flat, pid, "1.0.0")
        os.makedirs(d)
        with open(os.path.join(d, f"{pid}.1.0.0.nupkg"), "wb") as f:
            f.write(rnd[:size])
    os.makedirs(os.path.join(flat, "pkg"))
    versions = ",".join(f'"1.0.{i}"' for i in range(16))
    with open(os.path.join(flat, "pkg", "index.json"), "w") as f:
        f.write('{"versions":[' + versions + "]}")  # ~200 bytes
    with open(os.path.join(o, "tmpl", "small.nupkg"), "wb") as f:
        f.write(rnd[:2048])
    os.link(os.path.join(flat, "p50m", "1.0.0", "p50m.1.0.0.nupkg"),
            os.path.join(o, "tmpl", "big.nupkg"))
    return o


def nginx_conf(w, origin_port, static_port, proxy_port):
    tmp = os.path.join(w, "ngx-tmp")
    os.makedirs(tmp)
    return f"""
worker_processes 2;
error_log {w}/nginx-error.log warn;
pid {w}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  proxy_cache_path {w}/ngx-cache levels=1:2 keys_zone=pc:64m max_size=20g inactive=1d use_temp_path=off;
  log_format uri '$request_uri';
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
  server {{  # the origin: distinct cold/herd keys all map to one file
    listen 127.0.0.1:{origin_port} backlog=4096;
    root {w}/origin;
    access_log {w}/origin.log uri;
    location ~ ^/v3-flatcontainer/cold[^/]*/ {{ try_files /tmpl/small.nupkg =404; }}
    location ~ ^/v3-flatcontainer/herd[^/]*/ {{ try_files /tmpl/big.nupkg =404; }}
  }}
  server {{  # the reference: the same files, static, sendfile
    listen 127.0.0.1:{static_port} backlog=4096;
    root {w}/origin;
  }}
  server {{  # the competitor: proxy_cache on disk with a cache lock
    listen 127.0.0.1:{proxy_port} backlog=4096;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache pc;
      proxy_cache_valid 200 1d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 120s;
      proxy_cache_lock_age 120s;
    }}
  }}
}}
"""


def parse_wrk(out):
    def num(pattern, scale=None):
        m = re.search(pattern, out)
        if not m:
            return None
        v = float(m.group(1))
        unit = m.group(2) if m.lastindex and m.lastindex >= 2 else ""
        return v * (scale or {}).get(unit, 1)

    time_units = {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}
    size_units = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}
    return {
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "p50": num(r"\s50%\s+([\d.]+)(us|ms|s|m)\b", time_units),
        "p99": num(r"\s99%\s+([\d.]+)(us|ms|s|m)\b", time_units),
        "mbs": num(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", size_units),
        "errors": "Non-2xx" in out or "Socket errors" in out,
    }


def wrk(url, conns, seconds, script=None, args=()):
    threads = min(2, conns)
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    r = parse_wrk(out)
    if r["rps"] is None:
        sys.exit(f"wrk output not understood:\n{out}")
    return r


COLD_LUA = """
local n = 0
local tid = 0
function setup(thread) tid = tid + 1; thread:set("tid", tid) end
function init(args) prefix = args[1]; style = args[2] end
function request()
  n = n + 1
  local id = "cold" .. prefix .. "t" .. tid .. "n" .. n
  if style == "fc" then
    return wrk.format("GET", "/v3/flatcontainer/" .. id .. "/1.0.0/" .. id .. ".1.0.0.nupkg")
  end
  return wrk.format("GET", "/v3-flatcontainer/" .. id .. "/1.0.0/" .. id .. ".1.0.0.nupkg")
end
"""


def herd(w, url, clients):
    cfg = os.path.join(w, "herd.curl")
    with open(cfg, "w") as f:
        for _ in range(clients):
            f.write(f'url = "{url}"\noutput = "/dev/null"\n')
    start = time.monotonic()
    r = subprocess.run(["curl", "-s", "-Z", "--parallel-max", str(clients), "--parallel-immediate",
                        "--max-time", "120", "-w", "%{http_code} %{size_download}\n", "-K", cfg],
                       capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - start
    lines = r.stdout.split()
    ok = sum(1 for i in range(0, len(lines) - 1, 2)
             if lines[i] == "200" and lines[i + 1] == str(50 * 1024 * 1024))
    return elapsed, ok


def count_origin(w, needle):
    with open(os.path.join(w, "origin.log")) as f:
        return sum(1 for line in f if needle in line)


def vm_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples feedcache's anonymous and file-backed RSS every 100 ms: VmHWM
    counts mapped page-cache pages too, which the kernel can drop at will."""

    def __init__(self, pid):
        import threading
        self.pid, self.anon, self.file = pid, 0, 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

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


def fmt(values, f="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{f.format(med)} ({f.format(min(values))}–{f.format(max(values))})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3, help="per hit measurement")
    ap.add_argument("--cold-seconds", type=int, default=4)
    ap.add_argument("--herd", type=int, default=200)
    ap.add_argument("--memory", default="256MiB", help="feedcache memory tier")
    ap.add_argument("--only", default="hits,cold,herd", help="which parts to run")
    a = ap.parse_args()

    w = tempfile.mkdtemp(prefix="feedcache-bench-")
    os.chmod(w, 0o755)
    procs = []

    def cleanup(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(w, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        print(f"work dir {w}; building origin files", flush=True)
        make_origin(w)
        origin_port, static_port, proxy_port = free_port(), free_port(), free_port()
        with open(os.path.join(w, "origin", "v3", "index.json"), "w") as f:
            f.write('{"version":"3.0.0","resources":[{"@id":"http://127.0.0.1:%d/v3-flatcontainer/",'
                    '"@type":"PackageBaseAddress/3.0.0"}]}' % origin_port)
        conf = os.path.join(w, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(w, origin_port, static_port, proxy_port))
        procs.append(subprocess.Popen(["nginx", "-c", conf, "-p", w, "-g", "daemon off;"]))
        fc_conf = os.path.join(w, "feedcache.toml")
        with open(fc_conf, "w") as f:
            f.write(f'[cache]\nmemory_size = "{a.memory}"\n')
        fc = subprocess.Popen(
            [FEEDCACHE, "-c", fc_conf, "--listen", "127.0.0.1:0", "--cache-dir", os.path.join(w, "fc-cache"),
             "--upstream", f"http://127.0.0.1:{origin_port}/v3/index.json", "--metadata-ttl", "1h",
             "--threads", "2"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn"})
        procs.append(fc)
        line = fc.stdout.readline()
        fc_base = line.strip().removeprefix("feedcache listening on ")
        bases = {
            "feedcache": fc_base,
            "nginx-proxy": f"http://127.0.0.1:{proxy_port}",
            "nginx-static": f"http://127.0.0.1:{static_port}",
        }
        for b in bases.values():
            wait_http(b + ("/health" if b == fc_base else "/v3/index.json"))

        def path(target, pid):
            flat = "/v3/flatcontainer/" if target == "feedcache" else "/v3-flatcontainer/"
            if pid is None:
                return f"{flat}pkg/index.json"
            return f"{flat}{pid}/1.0.0/{pid}.1.0.0.nupkg"

        # Warm both caches (twice: nginx caches on the second sight of nothing,
        # but a second pass makes sure every entry is complete and on disk).
        for _ in range(2):
            for t in TARGETS:
                for _, pid, _ in SIZES:
                    subprocess.run(["curl", "-sf", "-o", "/dev/null", bases[t] + path(t, pid)], check=True)

        sampler = RssSampler(fc.pid)
        lua = os.path.join(w, "cold.lua")
        with open(lua, "w") as f:
            f.write(COLD_LUA)

        hits = {}   # (size, conns, target) -> [results]
        cold = {}   # target -> [rps]
        herds = {}  # target -> [(seconds, ok, origin_requests)]
        for rnd in range(1, a.rounds + 1):
            print(f"round {rnd}/{a.rounds}", flush=True)
            for label, pid, _ in SIZES if "hits" in a.only else []:
                for conns in (64, 1):
                    for t in TARGETS:
                        r = wrk(bases[t] + path(t, pid), conns, a.seconds)
                        hits.setdefault((label, conns, t), []).append(r)
            for t in ("feedcache", "nginx-proxy") if "cold" in a.only else []:
                style = "fc" if t == "feedcache" else "ngx"
                r = wrk(bases[t], 32, a.cold_seconds, lua, (f"r{rnd}{style}", style))
                cold.setdefault(t, []).append(r)
            for t in TARGETS if "herd" in a.only else []:
                key = f"herdr{rnd}{t.replace('-', '')}"
                p = (f"/v3/flatcontainer/{key}/1.0.0/{key}.1.0.0.nupkg" if t == "feedcache"
                     else f"/v3-flatcontainer/{key}/1.0.0/{key}.1.0.0.nupkg")
                if t == "nginx-static":
                    p = path(t, "p50m")
                secs, ok = herd(w, bases[t] + p, a.herd)
                herds.setdefault(t, []).append((secs, ok, count_origin(w, key)))

        rss = vm_hwm(fc.pid)
        print()
        if "hits" in a.only:
            print_hits(a, hits)
        if "cold" in a.only:
            print_cold(a, cold)
        if "herd" in a.only:
            print_herd(a, herds)
        sampler.stop.set()
        print(f"feedcache peak RSS (VmHWM): {rss:.0f} MB with a {a.memory} memory tier; "
              f"peak anonymous {sampler.anon:.0f} MB, peak file-backed (mapped page cache) "
              f"{sampler.file:.0f} MB")
    finally:
        cleanup()


def print_hits(a, hits):
    print(f"Hits (wrk, {a.seconds}s each; medians of {a.rounds} rounds, min–max in brackets)\n")
    print("| size | conns | target | req/s | p50 ms | p99 ms | MB/s | × nginx-static req/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, _, _ in SIZES:
        for conns in (64, 1):
            ref = [r["rps"] for r in hits[(label, conns, "nginx-static")]]
            for t in TARGETS:
                rs = hits[(label, conns, t)]
                ratios = [r["rps"] / s for r, s in zip(rs, ref)]
                err = " (errors)" if any(r["errors"] for r in rs) else ""
                print(f"| {label} | {conns} | {t}{err} | {fmt([r['rps'] for r in rs])} | "
                      f"{fmt([r['p50'] for r in rs], '{:.2f}')} | {fmt([r['p99'] for r in rs], '{:.2f}')} | "
                      f"{fmt([r['mbs'] for r in rs])} | {fmt(ratios, '{:.2f}')} |")
    print()


def print_cold(a, cold):
    print(f"Cold misses (wrk c=32, {a.cold_seconds}s, every request a distinct key)\n")
    print("| target | misses/s | p50 ms | p99 ms | × nginx-proxy |")
    print("| --- | --- | --- | --- | --- |")
    ref = [r["rps"] for r in cold["nginx-proxy"]]
    for t in ("feedcache", "nginx-proxy"):
        rs = cold[t]
        ratios = [r["rps"] / s for r, s in zip(rs, ref)]
        print(f"| {t} | {fmt([r['rps'] for r in rs])} | {fmt([r['p50'] for r in rs], '{:.2f}')} | "
              f"{fmt([r['p99'] for r in rs], '{:.2f}')} | {fmt(ratios, '{:.2f}')} |")
    print()


def print_herd(a, herds):
    print(f"Thundering herd: {a.herd} concurrent requests for one cold 50 MB key (curl -Z)\n")
    print("| target | last byte s | × nginx-static | complete 200s | origin requests |")
    print("| --- | --- | --- | --- | --- |")
    ref = [h[0] for h in herds["nginx-static"]]
    for t in TARGETS:
        hs = herds[t]
        origin = "n/a (static)" if t == "nginx-static" else ", ".join(str(h[2]) for h in hs)
        print(f"| {t} | {fmt([h[0] for h in hs], '{:.2f}')} | "
              f"{fmt([h[0] / s for h, s in zip(hs, ref)], '{:.2f}')} | "
              f"{', '.join(str(h[1]) for h in hs)} | {origin} |")
    print()


if __name__ == "__main__":
    main()
