#!/usr/bin/env python3
"""Cluster benchmark (issue #12 point 5): three feedcache nodes as one cache
in front of one origin, and the cost of cluster mode on a single node. All
on 127.0.0.1, in one run.

Run it through benches/cluster.sh, which installs nginx, wrk and curl and
builds feedcache in release mode. It starts an origin (nginx, its access log
counting fetches per key, as in benches/load.py), three feedcache nodes
n1-n3 whose [cluster] section lists all three, and a fourth feedcache,
"single", with the same configuration minus [cluster]. Each round runs, in a
rotating order where two targets are compared:

  hit     10 KB local hits at c=64 on n1 (a key n1 owns, and a key another
          node owns that n1 keeps a copy of after its first request) and on
          single: req/s and CPU per request of that node; each target runs
          twice per round, in the order A B C C B A;
  cold    a fresh 10 KB key per request (wrk c=64) against n1 alone (2/3 of
          its misses go through their owner) and against single;
  spread  the same, against n1, n2 and n3 at once (c=64 in all, split);
  herd    H concurrent downloads of one cold 50 MB package, spread evenly
          over the three nodes, and the same herd on single.

Reported: medians over rounds, ratios computed within a round, origin fetches
per key from the origin's log (must be 1.00), owner asks from each node's
/metrics. CPU is utime+stime from /proc, as in load.py.
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import col, flat, pkg_path, rng  # noqa: E402
from loadlib import (COLD_LUA, COLD_SIZE, HERD_SIZE, Abort, OriginLog, cpu_seconds,  # noqa: E402
                     curl, f, free_port, herd, make_origin, med, nginx_conf, ratios, service_index,
                     run_bench, table, wait_http, wrk)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = ["n1", "n2", "n3"]          # the cluster; n1 is the one compared with single
SCENARIOS = ["hit", "cold", "spread", "herd"]
SECRET_ENV = "FC_CLUSTER_SECRET"
FLAT = flat("feedcache")            # "/v3/flatcontainer/"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="per wrk run (~4 min in all with 3 rounds)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections (spread: in all, split over the nodes)")
    ap.add_argument("--herd", type=int, default=150, help="concurrent clients on one cold 50 MB package")
    ap.add_argument("--only", default="", help="scenarios, comma-separated: " + ",".join(SCENARIOS))
    ap.add_argument("--feedcache-bin", default=os.path.join(ROOT, "target", "release", "feedcache"))
    ap.add_argument("--memory", default="256MiB", help="memory tier of every node")
    ap.add_argument("--json", metavar="PATH", help="write all results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, caches)")
    ap.add_argument("--no-settle", action="store_true",
                    help="time cold misses even within 6 min of the last run's clean-up (skewed)")
    a = ap.parse_args()
    toks = [t for t in a.only.split(",") if t]
    bad = [t for t in toks if t not in SCENARIOS]
    a.scenarios = [s for s in SCENARIOS if not toks or s in toks]
    if bad or not a.scenarios:
        ap.error(f"unknown scenario(s): {bad}" if bad else "nothing to run")
    if a.rounds < 1 or a.seconds < 1 or a.herd < 1 or a.conns < len(NODES):
        ap.error("--rounds, --seconds and --herd must be positive, --conns at least 3")
    return a


def key_url(base, pid):
    return base + pkg_path("feedcache", pid)


class Cluster:
    """The origin, the three nodes and the single node; base URLs, process
    roots for CPU accounting, the origin's log."""

    def __init__(self, a, w, procs):
        self.a, self.w, self.procs = a, w, procs
        make_origin(w)
        self.lua = os.path.join(w, "cold.lua")
        with open(self.lua, "w") as fh:
            fh.write(COLD_LUA)
        ports = {t: free_port() for t in ["origin", "single"] + NODES}
        service_index(w, ports["origin"])
        self.origin = OriginLog(os.path.join(w, "ngx-origin", "access.log"))
        self.base = {t: f"http://127.0.0.1:{ports[t]}" for t in ["single"] + NODES}
        procs.start("origin", nginx_conf(w, "origin", ports["origin"], ports["origin"]))
        wait_http(f"http://127.0.0.1:{ports['origin']}/v3/index.json")
        env = dict(os.environ)
        env.pop("RUST_LOG", None)           # default logging: info, access log on stderr
        env[SECRET_ENV] = os.urandom(16).hex()
        self.roots = {}
        for t in ["single"] + NODES:
            conf = f'[cache]\nmemory_size = "{a.memory}"\n'
            if t != "single":  # every node lists all three, itself marked me
                peers = ", ".join(f'{{ addr = "127.0.0.1:{ports[n]}", me = {str(n == t).lower()} }}'
                                  for n in NODES)
                conf += f'\n[cluster]\nsecret_env = "{SECRET_ENV}"\npeers = [{peers}]\n'
            path = os.path.join(w, f"{t}.toml")
            with open(path, "w") as fh:
                fh.write(conf)
            argv = [a.feedcache_bin, "-c", path, "--listen", f"127.0.0.1:{ports[t]}",
                    "--cache-dir", os.path.join(w, f"{t}-cache"),
                    "--upstream", f"http://127.0.0.1:{ports['origin']}/v3/index.json",
                    "--metadata-ttl", "1h", "--threads", "2"]
            self.roots[t] = procs.start(t, argv, env).pid
        for t in ["single"] + NODES:
            wait_http(self.base[t] + "/health")
        for t in NODES:  # each node sees its two peers
            _, _, body = curl(self.base[t] + "/health", body=True)
            if body.decode().count(": up") < 2:
                raise Abort(f"{t}'s /health does not list two peers up:\n{body.decode()}")
        self.own, self.copy = self.hit_keys()

    def peer_asks(self, t):
        """{result: count} of the misses t asked of their owner."""
        _, _, body = curl(self.base[t] + "/metrics", body=True)
        return {m.group(1): int(float(m.group(2))) for m in re.finditer(
            rb'^feedcache_peer_requests_total\{result="(\w+)"\} (\S+)$', body, re.M)} if body else {}

    def asks(self, nodes):
        """Owner asks made by nodes so far: (ok, other results)."""
        ok = other = 0
        for t in nodes:
            for k, v in self.peer_asks(t).items():
                ok, other = (ok + v, other) if k == b"ok" else (ok, other + v)
        return ok, other

    def hit_keys(self):
        """Two 10 KB package ids (any cold* id is 10 KB at the origin): one n1
        owns (its first miss asked no peer) and one another node owns."""
        own = copy = None
        for i in range(40):
            pid = f"coldhit{i}"
            before = self.asks(["n1"])
            self.verify("n1", key_url(self.base["n1"], pid))
            asked = self.asks(["n1"])[0] > before[0]
            if asked and not copy:
                copy = pid
            elif not asked and not own:
                own = pid
            if own and copy:
                return own, copy
        raise Abort("no key owned by n1 and one owned by a peer among 40 ids: is the ring working?")

    def verify(self, t, url):
        code, size, _ = curl(url)
        if code != 200 or size != COLD_SIZE:
            raise Abort(f"{t} answered {url} with status {code} and {size} bytes, expected 200 and "
                        f"{COLD_SIZE}; logs: {self.w}/{t}.err")

    def cpu(self):
        return {t: cpu_seconds([r]) for t, r in self.roots.items()}

    def timed(self, fn, asking=NODES):
        """fn() with every feedcache's CPU and the owner asks of the nodes in
        asking counted around it."""
        self.procs.check_alive()
        a0, c0 = self.asks(asking), self.cpu()
        self.origin.mark()
        r = fn()
        c1 = self.cpu()
        r["cpu"] = {t: c1[t] - c0[t] for t in c0}
        time.sleep(0.5)  # fills still running when wrk stopped reach the origin's log
        a1 = self.asks(asking)
        r["asks_ok"], r["asks_failed"] = a1[0] - a0[0], a1[1] - a0[1]
        return r

    # ------------------------------------------------------------ scenarios

    def hit(self, target):
        """target: n1-own, n1-copy or single (the n1-own key)."""
        t, pid = ("single", self.own) if target == "single" else ("n1", getattr(self, target[3:]))
        url = key_url(self.base[t], pid)
        for _ in range(3):  # warm: on disk here, read again into the memory tier
            curl(url)
        self.verify(t, url)
        r = self.timed(lambda: wrk(url, self.a.conns, self.a.seconds))
        if r["non2xx"]:
            raise Abort(f"{t}: {r['non2xx']} non-2xx answers to {url}")
        r["origin_fetches"] = self.origin.count(f"/{pid}/")  # must be 0: all local hits
        r["cpu_s"] = r["cpu"][t]
        r["others_cpu_s"] = sum(v for k, v in r["cpu"].items() if k in NODES and k != t)
        return r

    def cold(self, target, rnd):
        """Fresh keys against one target (n1 or single)."""
        self.verify(target, key_url(self.base[target], f"coldchk{target}r{rnd}"))
        prefix = f"coldone{target}r{rnd}x"
        r = self.timed(lambda: wrk(self.base[target], self.a.conns, self.a.seconds, self.lua,
                                   (prefix, FLAT)), asking=[target] if target in NODES else [])
        r["fetches"], r["keys"] = self.origin.fetches(prefix)
        r["cpu_s"] = r["cpu"][target]
        r["cluster_cpu_s"] = sum(r["cpu"][n] for n in NODES) if target in NODES else r["cpu_s"]
        return r

    def spread(self, rnd):
        """Fresh keys against n1, n2 and n3 at once, the connections split."""
        conns = [self.a.conns // len(NODES) + (i < self.a.conns % len(NODES)) for i in range(len(NODES))]
        for n in NODES:
            self.verify(n, key_url(self.base[n], f"coldchk{n}r{rnd}"))
        needle = f"coldspr{rnd}x"

        def run():
            with concurrent.futures.ThreadPoolExecutor(len(NODES)) as ex:
                futs = [ex.submit(wrk, self.base[n], c, self.a.seconds, self.lua, (f"{needle}{n}", FLAT))
                        for n, c in zip(NODES, conns)]
                per = [fu.result() for fu in futs]
            return {"per_node": per, "requests": sum(p["requests"] for p in per),
                    "rps": sum(p["rps"] for p in per), "p99_ms": max(p["p99_ms"] or 0 for p in per),
                    "non2xx": sum(p["non2xx"] for p in per)}
        r = self.timed(run)
        if r["non2xx"]:
            raise Abort(f"spread: {r['non2xx']} non-2xx answers")
        r["fetches"], r["keys"] = self.origin.fetches(needle)
        r["cluster_cpu_s"] = sum(r["cpu"][n] for n in NODES)
        return r

    def herd(self, target, rnd):
        """target: cluster (clients spread over n1-n3) or single."""
        key = f"herd{target}r{rnd}x"
        urls = [key_url(self.base[t], key) for t in (NODES if target == "cluster" else ["single"])]

        def run():
            secs, ok = herd(self.w, urls, self.a.herd, HERD_SIZE)
            return {"seconds": secs, "complete": ok}
        r = self.timed(run, asking=NODES if target == "cluster" else [])
        if r["complete"] != self.a.herd:  # truncated bodies finish early: a bogus fast time
            raise Abort(f"{target}: only {r['complete']} of {self.a.herd} herd downloads of {key} "
                        f"were complete 200s of {HERD_SIZE} bytes")
        r["origin_fetches"] = self.origin.count(key)
        r["cpu_s"] = sum(r["cpu"][n] for n in (NODES if target == "cluster" else ["single"]))
        return r


def rotate(xs, rnd):
    k = (rnd - 1) % len(xs)
    return xs[k:] + xs[:k]


def combine(runs):
    """Two hit runs of one target in one round as one: req/s and latencies
    averaged, CPU per request over both, fetches and CPU of others summed."""
    r = {k: sum(x[k] for x in runs) / len(runs) for k in ("rps", "p50_ms", "p99_ms")}
    r.update({k: sum(x[k] for x in runs) for k in ("requests", "cpu_s", "others_cpu_s", "origin_fetches")})
    r["cpu_us"] = r["cpu_s"] * 1e6 / r["requests"]
    r["runs"] = runs
    return r


def run_rounds(a, b):
    """results[scenario][target] = [one dict per round]"""
    res = {s: {} for s in a.scenarios}

    def keep(s, t, r, msg):
        res[s].setdefault(t, []).append(r)
        print(f"  {s:6} {t:8} {msg}", flush=True)

    for rnd in range(1, a.rounds + 1):
        print(f"round {rnd}/{a.rounds}", flush=True)
        if "hit" in a.scenarios:
            # A B C C B A: each target twice, so that a drift of the machine's
            # load within the round weighs on all three alike.
            order = rotate(["n1-own", "n1-copy", "single"], rnd)
            runs = {}
            for t in order + order[::-1]:
                runs.setdefault(t, []).append(b.hit(t))
            for t in order:
                r = combine(runs[t])
                keep("hit", t, r, f"{r['rps']:9.0f}/s {r['cpu_us']:7.1f} µs CPU "
                     f"({', '.join(f(x['rps']) for x in r['runs'])} req/s), "
                     f"other nodes {r['others_cpu_s']:.2f} s CPU, origin {r['origin_fetches']}")
        if "cold" in a.scenarios:
            for t in rotate(["n1", "single"], rnd):
                r = b.cold(t, rnd)
                r["cpu_us"] = r["cpu_s"] * 1e6 / r["requests"]
                r["cluster_cpu_us"] = r["cluster_cpu_s"] * 1e6 / r["requests"]
                keep("cold", t, r, f"{r['rps']:9.0f}/s {r['cpu_us']:7.1f} µs CPU "
                     f"({r['cluster_cpu_us']:.1f} all nodes), origin {r['fetches']} fetches of {r['keys']} "
                     f"keys, {r['asks_ok']} owner asks")
        if "spread" in a.scenarios:
            r = b.spread(rnd)
            r["cluster_cpu_us"] = r["cluster_cpu_s"] * 1e6 / r["requests"]
            keep("spread", "n1-n3", r, f"{r['rps']:9.0f}/s ({', '.join(f(p['rps']) for p in r['per_node'])}) "
                 f"{r['cluster_cpu_us']:7.1f} µs CPU, origin {r['fetches']} fetches of {r['keys']} keys, "
                 f"{r['asks_ok']} owner asks")
        if "herd" in a.scenarios:
            for t in rotate(["cluster", "single"], rnd):
                r = b.herd(t, rnd)
                keep("herd", t, r, f"{r['seconds']:6.2f} s, {r['complete']} complete, "
                     f"origin {r['origin_fetches']}, {r['asks_ok']} owner asks")
    return res


def report(a, res):
    summary, verdict = {}, []
    if "hit" in res and res["hit"]:
        print(f"Local hits (10 KB, wrk c={a.conns}, {a.seconds}s per run; medians of {a.rounds} rounds, "
              "req/s min–max; each round's figure is the mean of 2 runs; × single = median of per-round ratios; "
              "CPU of the node under load)\n")
        rows, single = [], res["hit"].get("single")
        for t, rs in res["hit"].items():
            m = {k: med(col(rs, k)) for k in ("rps", "p50_ms", "p99_ms", "cpu_us", "others_cpu_s")}
            m["rps_x_single"] = med(ratios(col(rs, "rps"), col(single, "rps")))
            m["cpu_x_single"] = med(ratios(col(rs, "cpu_us"), col(single, "cpu_us")))
            summary.setdefault("hit", {})[t] = m
            what = {"n1-own": "n1, cluster, key n1 owns", "n1-copy": "n1, cluster, key a peer owns (local copy)",
                    "single": "single, no [cluster]"}[t]
            rows.append([what, rng(col(rs, "rps")), f(m["p50_ms"], 2), f(m["p99_ms"], 2), f(m["cpu_us"], 1),
                         f(m["rps_x_single"], 3), f(m["cpu_x_single"], 3),
                         "-" if t == "single" else f(m["others_cpu_s"], 2),
                         sum(col(rs, "origin_fetches"))])
        table(["target", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "req/s × single", "CPU × single",
               "CPU s of n2+n3", "origin fetches"], rows)
        for t in ("n1-own", "n1-copy"):
            if t in summary["hit"] and single:
                x, c = summary["hit"][t]["rps_x_single"], summary["hit"][t]["cpu_x_single"]
                ok = x is not None and x >= 0.95
                verdict.append(f"hit overhead of cluster mode ({t}): req/s × single {f(x, 3)}, CPU/req × single "
                               f"{f(c, 3)} (per round {', '.join(f(v, 3) for v in ratios(col(res['hit'][t], 'rps'), col(single, 'rps')))})"
                               f" — {'met' if ok else 'NOT met'} (≥ 0.95)")
    cold_rows = []
    if "cold" in res and res["cold"]:
        single = res["cold"].get("single")
        for t, rs in res["cold"].items():
            m = {k: med(col(rs, k)) for k in ("rps", "p50_ms", "p99_ms", "cpu_us", "cluster_cpu_us")}
            m["rps_x_single"] = med(ratios(col(rs, "rps"), col(single, "rps")))
            m["fetches_per_key"] = med(ratios(col(rs, "fetches"), col(rs, "keys")))
            m["keys_per_request"] = med(ratios(col(rs, "keys"), col(rs, "requests")))
            m["asks_per_miss"] = med(ratios(col(rs, "asks_ok"), col(rs, "requests")))
            summary.setdefault("cold", {})[t] = m
            what = {"n1": "n1 alone (cluster)", "single": "single, no [cluster]"}[t]
            cold_rows.append([what, rng(col(rs, "rps")), f(m["p99_ms"], 1), f(m["cpu_us"], 1),
                              f(m["cluster_cpu_us"], 1), f(m["rps_x_single"], 2),
                              "-" if t == "single" else f(m["asks_per_miss"], 2),
                              f(m["fetches_per_key"], 2), f(m["keys_per_request"], 2)])
    if "spread" in res and res["spread"]:
        rs = res["spread"]["n1-n3"]
        single = res.get("cold", {}).get("single")
        m = {"rps": med(col(rs, "rps")), "p99_ms": med(col(rs, "p99_ms")),
             "cluster_cpu_us": med(col(rs, "cluster_cpu_us")),
             "rps_x_single": med(ratios(col(rs, "rps"), col(single, "rps"))),
             "fetches_per_key": med(ratios(col(rs, "fetches"), col(rs, "keys"))),
             "keys_per_request": med(ratios(col(rs, "keys"), col(rs, "requests"))),
             "asks_per_miss": med(ratios(col(rs, "asks_ok"), col(rs, "requests")))}
        summary["spread"] = m
        cold_rows.append(["n1+n2+n3 at once (total)", rng(col(rs, "rps")), f(m["p99_ms"], 1), "-",
                          f(m["cluster_cpu_us"], 1), f(m["rps_x_single"], 2), f(m["asks_per_miss"], 2),
                          f(m["fetches_per_key"], 2), f(m["keys_per_request"], 2)])
    if cold_rows:
        print(f"Cold misses (a fresh {COLD_SIZE // 1024} KB key per request, wrk c={a.conns} in all, "
              f"{a.seconds}s; misses/s min–max; × single = median of per-round ratios)\n")
        table(["target", "misses/s", "p99 ms", "CPU µs/miss (node)", "CPU µs/miss (all nodes)",
               "misses/s × single", "owner asks / miss", "origin fetches / key", "keys fetched / request"],
              cold_rows)
        for name, m in [("cold misses spread over n1-n3", summary.get("spread")),
                        ("cold misses on n1", summary.get("cold", {}).get("n1")),
                        ("cold misses on single", summary.get("cold", {}).get("single"))]:
            if m:
                per = m["fetches_per_key"]
                verdict.append(f"{name}: origin fetches per distinct key {f(per, 2)} — "
                               f"{'met' if per is not None and round(per, 2) == 1.00 else 'NOT met'} (1.00)")
        c = summary.get("cold", {}).get("n1")
        if c:
            verdict.append(f"cold-miss throughput of n1 in the cluster × single: {f(c['rps_x_single'], 2)} "
                           f"(informational: {f(c['asks_per_miss'], 2)} of its misses go through their owner)")
    if "herd" in res and res["herd"]:
        print(f"Thundering herd ({a.herd} concurrent clients, one cold 50 MB package; cluster: clients spread "
              "evenly over n1-n3; wall time to the last byte; × single = median of per-round ratios)\n")
        rows, single = [], res["herd"].get("single")
        for t, rs in res["herd"].items():
            m = {"seconds": med(col(rs, "seconds")), "cpu_s": med(col(rs, "cpu_s")),
                 "x_single": med(ratios(col(rs, "seconds"), col(single, "seconds"))),
                 "fetches_per_package": sum(col(rs, "origin_fetches")) / len(rs)}
            summary.setdefault("herd", {})[t] = m
            what = {"cluster": "3 nodes", "single": "single, no [cluster]"}[t]
            rows.append([what, rng(col(rs, "seconds"), 2), f(m["x_single"], 2), f(m["cpu_s"], 2),
                         ", ".join(map(str, col(rs, "complete"))), ", ".join(map(str, col(rs, "origin_fetches"))),
                         f(m["fetches_per_package"], 2),
                         "-" if t == "single" else ", ".join(map(str, col(rs, "asks_ok")))])
        table(["target", "last byte s", "× single", "server CPU s", "complete 200s", "origin fetches per round",
               "origin fetches / package", "owner asks per round"], rows)
        c = summary["herd"].get("cluster")
        if c:
            fp = c["fetches_per_package"]
            verdict.append(f"herd over the cluster: origin fetches per package {f(fp, 2)} — "
                           f"{'met' if fp == 1 else 'NOT met'} (1.00); last byte {f(c['seconds'], 2)} s "
                           f"({f(c['x_single'], 2)} × single)")
    if verdict:
        print("Verdict\n")
        for v in verdict:
            print(f"- {v}")
        print()
    return summary, verdict


def versions(a):
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    return {"feedcache": first([a.feedcache_bin, "--version"]), "nginx": first(["nginx", "-v"]),
            "wrk": first(["wrk", "-v"]), "cpus": os.cpu_count()}


def main():
    a = parse_args()
    if not os.access(a.feedcache_bin, os.X_OK):
        sys.exit(f"no feedcache binary at {a.feedcache_bin} (cargo build --release)")

    def body(w, procs):
        meta = {"rounds": a.rounds, "seconds": a.seconds, "conns": a.conns, "herd": a.herd,
                "scenarios": a.scenarios, "memory": a.memory, **versions(a)}
        print(f"work dir {w}; {meta['feedcache']}; {meta['nginx']}; {meta['wrk']}; {meta['cpus']} CPUs",
              flush=True)
        b = Cluster(a, w, procs)
        print(f"nodes n1-n3 (cluster) and single (no [cluster]) up; n1 owns {b.own}, a peer owns {b.copy}",
              flush=True)
        res = run_rounds(a, b)
        print()
        summary, verdict = report(a, res)
        return {"meta": meta, "results": res, "summary": summary, "verdict": verdict}

    run_bench(a, "feedcache-cluster-", body)


if __name__ == "__main__":
    main()
