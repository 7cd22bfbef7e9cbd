#!/usr/bin/env bash
# Cluster benchmark (issue #12): three feedcache nodes over one origin (herd
# spread over the nodes, cold misses on all three, origin fetches per key)
# and the cost of cluster mode on one node against the same binary without
# [cluster]; interleaved rounds, 127.0.0.1 only, bounded (about 4 minutes
# with the defaults on 2 cores, after the build).
#   bash benches/cluster.sh [--rounds 3] [--seconds 5] [--conns 64] [--herd 150]
#                           [--only hit,cold,spread,herd] [--json out.json] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
cargo build --release --quiet
exec python3 benches/cluster.py "$@"
