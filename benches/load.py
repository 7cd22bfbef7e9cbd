#!/usr/bin/env python3
"""Load benchmark: feedcache vs nginx proxy_cache vs Varnish, with nginx
serving the same files statically as the physical-limit reference. All on
127.0.0.1, all against one origin (its own nginx), in one run.

Run it through benches/load.sh, which installs nginx, wrk, varnish and curl
and builds feedcache in release mode. Targets are interleaved within each
round (every target runs every scenario, in a rotating order) so that the
noise of a shared machine hits all of them alike; every run is bounded in
time. Reported: medians over rounds, and ratios computed within a round.

Server CPU per request is read from /proc (utime+stime of the server's whole
process tree: nginx master+workers, varnishd manager+child, feedcache)
before and after each wrk run, divided by the requests wrk completed (for
bodies of 1 MB and more: by bytes read / body size, see loadlib.wrk).
wrk's own CPU per request is shown beside it: on loopback the kernel's
work for a transfer lands on whichever side copies the bytes (a server
writing from memory, or a client reading pages `sendfile` queued).
Hit runs are checked to cause no origin fetch; cold runs to fetch every key.
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadlib import (COLD_LUA, COLD_SIZE, HERD_SIZE, SIZES, Abort, OriginLog,  # noqa: E402
                     RssSampler, cpu_seconds, curl, f, free_port, herd, make_origin, med, nginx_conf,
                     ratios, run_bench, service_index, table, varnish_cmd, varnish_counters,
                     wait_http, wrk)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["feedcache", "feedcache-before", "nginx-cache", "varnish", "static"]
TAG = {"feedcache": "fc", "feedcache-before": "fcb", "nginx-cache": "ngx", "varnish": "vn", "static": "st"}
HITS = [f"{size}-c{c}" for size in SIZES for c in (64, 1)]
# Latency at one offered load for every target: 10 KB hits over 64
# connections that each wait PACE_MS between requests (~20k req/s here,
# about half of what the slowest peer serves). At c64 unpaced, a faster
# server is sent more requests by wrk and queues them on the same two
# cores, so its p99 there is not comparable with a slower one's.
PACED = ["10k-paced"]
PACE_MS = 2
SCENARIOS = HITS + PACED + ["cold", "herd"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3, help="per wrk run (~7 min in all by default)")
    ap.add_argument("--herd", type=int, default=200, help="concurrent clients on one cold 50 MB key")
    ap.add_argument("--only", default="", help="scenarios, comma-separated: " + ",".join(SCENARIOS)
                    + "; a size (index,10k,1m,50m) means both c64 and c1 (and 10k-paced for 10k); "
                    "'hits' means all hits but the paced one")
    # feedcache-before runs only with --baseline-bin, never by default.
    ap.add_argument("--targets", default=",".join(t for t in TARGETS if t != "feedcache-before"))
    ap.add_argument("--feedcache-bin", default=os.path.join(ROOT, "target", "release", "feedcache"))
    ap.add_argument("--baseline-bin", metavar="PATH",
                    help="also run this feedcache build as 'feedcache-before' (before/after in one run)")
    ap.add_argument("--memory", default="256MiB", help="feedcache memory tier")
    ap.add_argument("--json", metavar="PATH", help="write all results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, caches)")
    ap.add_argument("--no-settle", action="store_true",
                    help="time cold misses even within 6 min of the last run's clean-up (skewed)")
    a = ap.parse_args()
    toks = [t for t in a.only.split(",") if t]
    a.scenarios = [s for s in SCENARIOS if not toks or any(
        t == s or s.startswith(t + "-") or (t == "hits" and s in HITS) for t in toks)]
    a.targets = [t for t in TARGETS if (t in a.targets.split(",") and t != "feedcache-before")
                 or (t == "feedcache-before" and a.baseline_bin)]
    bad = [t for t in toks if not any(s == t or s.startswith(t + "-") for s in SCENARIOS) and t != "hits"]
    bad += [t for t in ap.parse_args().targets.split(",") if t not in TARGETS]
    if bad or not a.scenarios or not a.targets:
        ap.error(f"nothing to run (unknown: {bad})" if bad else "nothing to run")
    if a.rounds < 1 or a.seconds < 1 or a.herd < 1:
        ap.error("--rounds, --seconds and --herd must be positive")
    return a


def flat(t):
    """Where each target serves the flat container."""
    return "/v3/flatcontainer/" if t.startswith("feedcache") else "/v3-flatcontainer/"


def pkg_path(t, pid):
    return flat(t) + ("pkg/index.json" if pid == "pkg" else f"{pid}/1.0.0/{pid}.1.0.0.nupkg")


class Bench:
    """The running servers: base URLs, process roots for CPU accounting, and
    the origin's log for counting fetches."""

    def __init__(self, a, w, procs):
        self.a, self.w, self.procs = a, w, procs
        self.index = make_origin(w)
        self.lua = os.path.join(w, "cold.lua")
        with open(self.lua, "w") as fh:
            fh.write(COLD_LUA)
        self.paced_lua = os.path.join(w, "paced.lua")
        with open(self.paced_lua, "w") as fh:
            fh.write(f"function delay() return {PACE_MS} end\n")
        ports = {t: free_port() for t in ["origin"] + TARGETS}
        service_index(w, ports["origin"])
        self.origin = OriginLog(os.path.join(w, "ngx-origin", "access.log"))
        self.base = {t: f"http://127.0.0.1:{ports[t]}" for t in TARGETS}
        self.roots = {}
        procs.start("origin", nginx_conf(w, "origin", ports["origin"], ports["origin"]))
        wait_http(f"http://127.0.0.1:{ports['origin']}/v3/index.json")
        for t in a.targets:
            if t.startswith("feedcache"):
                argv, env = self.feedcache_cmd(t, ports), dict(os.environ)
                env.pop("RUST_LOG", None)  # default logging: info, access log on stderr
            elif t == "varnish":
                argv, env = varnish_cmd(w, ports[t], ports["origin"]), None
            else:
                argv, env = nginx_conf(w, t.split("-")[-1], ports[t], ports["origin"]), None
            self.roots[t] = [procs.start(t, argv, env).pid]
        for t in a.targets:
            wait_http(self.base[t] + ("/health" if t.startswith("feedcache") else "/v3/index.json"))
        self.rss = RssSampler(self.roots["feedcache"][0]) if "feedcache" in a.targets else None

    def feedcache_cmd(self, t, ports):
        conf = os.path.join(self.w, "feedcache.toml")
        with open(conf, "w") as fh:
            fh.write(f'[cache]\nmemory_size = "{self.a.memory}"\n')
        binary = self.a.baseline_bin if t == "feedcache-before" else self.a.feedcache_bin
        return [binary, "-c", conf, "--listen", f"127.0.0.1:{ports[t]}",
                "--cache-dir", os.path.join(self.w, TAG[t] + "-cache"),
                "--upstream", f"http://127.0.0.1:{ports['origin']}/v3/index.json",
                "--metadata-ttl", "1h", "--threads", "2"]

    def timed(self, t, fn):
        """fn() under CPU accounting of t's processes and origin-fetch counting."""
        self.procs.check_alive()
        self.origin.mark()
        c0 = cpu_seconds(self.roots[t])
        r = fn()
        r["cpu_s"] = cpu_seconds(self.roots[t]) - c0
        return r

    def verify(self, t, url, label):
        """Status 200 and the right body; a cache answering 404 or an empty
        body would otherwise yield a fast, bogus number."""
        code, size, _ = curl(url)
        want = {"index": len(self.index), "cold": COLD_SIZE}.get(label) or SIZES[label][1]
        if code != 200 or size != want:  # all four pass the version list through as is
            raise Abort(f"{t} answered {url} with status {code} and {size} bytes, "
                        f"expected 200 and {want} bytes; logs: {self.w}/{t}.err, ngx-*/")

    def hit(self, t, scen):
        label, mode = scen.rsplit("-", 1)  # "10k-c64" or "10k-paced"
        conns, script = (64, self.paced_lua) if mode == "paced" else (int(mode[1:]), None)
        pid = SIZES[label][0]
        url = self.base[t] + pkg_path(t, pid)
        for _ in range(3):  # warm: cached, and complete on disk where applicable
            curl(url)
        self.verify(t, url, label)
        r = self.timed(t, lambda: wrk(url, conns, self.a.seconds, script, body=SIZES[label][1]))
        if r["non2xx"]:
            raise Abort(f"{t}: {r['non2xx']} non-2xx answers to {url} during {scen}")
        r["origin_fetches"] = self.origin.count(f"/{pid}/")  # should stay 0: all hits
        return r

    def warm_cold(self, t):
        """An untimed second of cold misses before the first timed one: the
        first files a run creates measured up to 3x dearer per miss,
        whichever target came first (one build in both feedcache roles,
        BENCHMARKS.md), a file-system cost no later round pays."""
        wrk(self.base[t], 64, 1, self.lua, (f"coldwarm{TAG[t]}x", flat(t)))

    def cold(self, t, rnd):
        check = f"coldcheck{TAG[t]}r{rnd}"
        self.verify(t, self.base[t] + flat(t) + f"{check}/1.0.0/{check}.1.0.0.nupkg", "cold")
        prefix = f"cold{TAG[t]}r{rnd}x"  # fresh keys for this target and round
        r = self.timed(t, lambda: wrk(self.base[t], 64, self.a.seconds, self.lua, (prefix, flat(t))))
        r["origin_fetches"] = self.origin.count(prefix)
        return r

    def herd(self, t, rnd):
        if t == "static":
            key, url = None, self.base[t] + pkg_path(t, "p50m")
        else:
            key = f"herd{TAG[t]}r{rnd}x"
            url = self.base[t] + flat(t) + f"{key}/1.0.0/{key}.1.0.0.nupkg"

        def run():
            secs, ok = herd(self.w, url, self.a.herd, HERD_SIZE)
            return {"seconds": secs, "complete": ok}
        r = self.timed(t, run)
        if r["complete"] != self.a.herd:  # truncated bodies finish early: a bogus fast time
            raise Abort(f"{t}: only {r['complete']} of {self.a.herd} herd downloads of {url} "
                        f"were complete 200s of {HERD_SIZE} bytes")
        r["origin_fetches"] = self.origin.count(key) if key else None
        return r


def run_rounds(a, b):
    """results[scenario][target] = [one dict per round]"""
    res = {s: {} for s in a.scenarios}
    for rnd in range(1, a.rounds + 1):
        order = a.targets[(rnd - 1) % len(a.targets):] + a.targets[:(rnd - 1) % len(a.targets)]
        print(f"round {rnd}/{a.rounds} (order {', '.join(order)})", flush=True)
        for s in a.scenarios:
            if s == "cold" and rnd == 1:
                for t in order:
                    if t != "static":
                        b.warm_cold(t)
            for t in order:
                if s in HITS or s in PACED:
                    r = b.hit(t, s)
                elif t == "static":
                    r = b.herd(t, rnd) if s == "herd" else None  # static cannot miss
                else:
                    r = b.cold(t, rnd) if s == "cold" else b.herd(t, rnd)
                if r is None:
                    continue
                if "requests" in r:
                    r["cpu_us"] = r["cpu_s"] * 1e6 / r["requests"]
                    r["client_us"] = r["client_cpu_s"] * 1e6 / r["requests"]
                    r["box_us"] = r["cpu_us"] + r["client_us"]
                    msg = f"{r['rps']:9.0f}/s {r['cpu_us']:8.1f} µs CPU"
                else:
                    msg = f"{r['seconds']:6.2f} s, {r['complete']} complete, origin {r['origin_fetches']}"
                res[s].setdefault(t, []).append(r)
                print(f"  {s:9} {t:11} {msg}", flush=True)
    return res


def col(runs, key):
    return [r[key] for r in runs] if runs else []


def rng(vals, digits=0):
    if len(vals) < 2:
        return f(med(vals), digits)
    return f"{f(med(vals), digits)} ({f(min(vals), digits)}–{f(max(vals), digits)})"


def report(a, res):
    summary, verdict = {}, []
    hits = [s for s in a.scenarios if s in HITS]
    if hits:
        print(f"Hits (wrk, {a.seconds}s per run; medians of {a.rounds} rounds, req/s min–max; "
              "× static = median of per-round ratios)\n")
        rows = []
        for s in hits:
            st = res[s].get("static")
            for t in a.targets:
                rs = res[s][t]
                notes = [f"origin fetches {sum(col(rs, 'origin_fetches'))}!"] if t != "static" and \
                    sum(col(rs, "origin_fetches")) else []
                notes += [f"socket errors {sum(col(rs, 'socket_errors'))}"] if sum(col(rs, "socket_errors")) else []
                m = {k: med(col(rs, k)) for k in ("rps", "p50_ms", "p99_ms", "mb_s", "cpu_us", "client_us")}
                m["rps_x_static"] = med(ratios(col(rs, "rps"), col(st, "rps")))
                m["cpu_x_static"] = med(ratios(col(rs, "cpu_us"), col(st, "cpu_us")))
                summary.setdefault(s, {})[t] = m
                rows.append([s, t, rng(col(rs, "rps")), f(m["p50_ms"], 2), f(m["p99_ms"], 2), f(m["mb_s"]),
                             f(m["cpu_us"], 1), f(m["client_us"], 1), f(m["rps_x_static"], 2),
                             f(m["cpu_x_static"], 2), "; ".join(notes)])
            fc, peers = res[s].get("feedcache"), [res[s].get(p) for p in ("nginx-cache", "varnish")]
            peers = [p for p in peers if p]
            if fc and peers:  # per round: feedcache against the better peer of that round
                best = [max(x) for x in zip(*[col(p, "rps") for p in peers])]
                least = [min(x) for x in zip(*[col(p, "cpu_us") for p in peers])]
                rr, cr = ratios(col(fc, "rps"), best), ratios(col(fc, "cpu_us"), least)
                box = ratios(col(fc, "box_us"), [min(x) for x in zip(*[col(p, "box_us") for p in peers])])
                verdict.append([s, med(rr), "req/s ÷ max(nginx-cache, varnish)",
                                med(cr), "CPU/req ÷ min(nginx-cache, varnish)", rr, cr, box])
        table(["scenario", "target", "req/s", "p50 ms", "p99 ms", "MB/s", "CPU µs/req",
               "wrk CPU µs/req", "req/s × static", "CPU × static", "notes"], rows)
    for s in (s for s in PACED if s in a.scenarios):
        print(f"Latency at one load ({s}: 10 KB hits, 64 connections each waiting {PACE_MS} ms "
              "between requests; medians; p99 × nginx-cache = median of per-round ratios)\n")
        rows, ref = [], res[s].get("nginx-cache")
        for t, rs in res[s].items():
            m = {k: med(col(rs, k)) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
            m["p99_x_nginx_cache"] = med(ratios(col(rs, "p99_ms"), col(ref, "p99_ms"))) if ref else None
            summary.setdefault(s, {})[t] = m
            rows.append([t, rng(col(rs, "rps")), f(m["p50_ms"], 2), rng(col(rs, "p99_ms"), 2),
                         f(m["cpu_us"], 1), f(m["p99_x_nginx_cache"], 2)])
        table(["target", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "p99 × nginx-cache"], rows)
    if "cold" in a.scenarios and res["cold"]:
        print(f"Cold misses (wrk c=64, {a.seconds}s, a fresh {COLD_SIZE // 1024} KB key per request "
              "and target; × nginx-cache = median of per-round ratios)\n")
        rows, ref, per_round = [], res["cold"].get("nginx-cache"), {}
        for t, rs in res["cold"].items():
            m = {k: med(col(rs, k)) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
            per_round[t] = ratios(col(rs, "rps"), col(ref, "rps")), ratios(col(rs, "cpu_us"), col(ref, "cpu_us"))
            m["rps_x_nginx_cache"], m["cpu_x_nginx_cache"] = map(med, per_round[t])
            summary.setdefault("cold", {})[t] = m
            fetched = med(ratios(col(rs, "origin_fetches"), col(rs, "requests")))
            rows.append([t, rng(col(rs, "rps")), f(m["p50_ms"], 2), f(m["p99_ms"], 2), f(m["cpu_us"], 1),
                         f(m["rps_x_nginx_cache"], 2), f(m["cpu_x_nginx_cache"], 2), f(fetched, 2)])
        table(["target", "misses/s", "p50 ms", "p99 ms", "CPU µs/miss", "misses/s × nginx-cache",
               "CPU × nginx-cache", "origin fetches / request"], rows)
        if "feedcache" in res["cold"] and ref:
            rr, cr = per_round["feedcache"]
            box = ratios(col(res["cold"]["feedcache"], "box_us"), col(ref, "box_us"))
            verdict.append(["cold", med(rr), "misses/s ÷ nginx-cache", med(cr), "CPU/miss ÷ nginx-cache",
                            rr, cr, box])
    if "herd" in a.scenarios:
        print(f"Thundering herd ({a.herd} concurrent clients, one cold 50 MB key; wall time to the "
              "last byte; × static = median of per-round ratios)\n")
        rows, st = [], res["herd"].get("static")
        for t, rs in res["herd"].items():
            m = {"seconds": med(col(rs, "seconds")),
                 "x_static": med(ratios(col(rs, "seconds"), col(st, "seconds")))}
            summary.setdefault("herd", {})[t] = m
            fetches = col(rs, "origin_fetches")
            flag = " (should be 1!)" if t == "feedcache" and any(x != 1 for x in fetches) else ""
            m["cpu_s"] = med(col(rs, "cpu_s"))
            rows.append([t, rng(col(rs, "seconds"), 2), f(m["x_static"], 2), f(m["cpu_s"], 2),
                         ", ".join(str(x) for x in col(rs, "complete")),
                         "n/a" if t == "static" else ", ".join(map(str, fetches)) + flag])
        table(["target", "last byte s", "× static", "server CPU s", "complete 200s", "origin fetches per round"], rows)
        fc, ngx = res["herd"].get("feedcache"), res["herd"].get("nginx-cache")
        if fc and ngx:
            rr = ratios(col(fc, "seconds"), col(ngx, "seconds"))
            verdict.append(["herd", med(rr), "last-byte wall ÷ nginx-cache (lower is better)", None, "",
                            rr, [], []])
    if verdict:
        print("Verdict: feedcache against its peers (medians of per-round ratios, min–max; "
              "throughput > 1 and CPU < 1 favour feedcache; server + wrk: both sides' CPU per "
              "request against the peer with the least)\n")
        table(["scenario", "throughput ratio", "of", "CPU ratio", "of", "server + wrk CPU ratio"],
              [[v[0], rng(v[5], 2), v[2], rng(v[6], 2), v[4], rng(v[7], 2)] for v in verdict])
    return summary, verdict


def versions(a):
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    return {"feedcache": first([a.feedcache_bin, "--version"]), "nginx": first(["nginx", "-v"]),
            "varnish": first(["varnishd", "-V"]), "wrk": first(["wrk", "-v"]),
            "curl": first(["curl", "--version"]), "cpus": os.cpu_count()}


def main():
    a = parse_args()
    if "feedcache" in a.targets and not os.access(a.feedcache_bin, os.X_OK):
        sys.exit(f"no feedcache binary at {a.feedcache_bin} (cargo build --release)")

    def body(w, procs):
        meta = {"rounds": a.rounds, "seconds": a.seconds, "herd": a.herd, "scenarios": a.scenarios,
                "targets": a.targets, "memory": a.memory, **versions(a)}
        print(f"work dir {w}; {meta['feedcache']}; {meta['nginx']}; {meta['varnish']}; {meta['wrk']}",
              flush=True)
        b = Bench(a, w, procs)
        res = run_rounds(a, b)
        print()
        summary, verdict = report(a, res)
        if b.rss:
            b.rss.stop.set()
            print(f"feedcache peak RSS: anonymous {b.rss.anon:.0f} MB, file-backed (mapped page cache) "
                  f"{b.rss.file:.0f} MB, with a {a.memory} memory tier")
            meta["feedcache_peak_rss_mb"] = {"anon": b.rss.anon, "file": b.rss.file}
        if "varnish" in a.targets:
            meta["varnish_counters"] = varnish_counters(w)
            print("varnish counters: " + ", ".join(f"{k} {v}" for k, v in meta["varnish_counters"].items()))
        return {"meta": meta, "results": res, "summary": summary, "verdict": verdict}

    run_bench(a, "feedcache-bench-", body)


if __name__ == "__main__":
    main()
