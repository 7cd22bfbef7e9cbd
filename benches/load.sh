#!/usr/bin/env bash
# Load benchmark: feedcache vs nginx proxy_cache vs Varnish, with nginx
# serving the same files statically as the reference; interleaved rounds,
# 127.0.0.1 only, bounded (about 8 minutes with the defaults on 2 cores, plus
# up to 6 waiting out the last run's clean-up before cold misses are timed).
#   bash benches/load.sh [--rounds 3] [--seconds 3] [--herd 200] [--only 10k,cold]
#                        [--targets feedcache,nginx-cache,varnish,static] [--json out.json] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
cargo build --release --quiet
exec python3 benches/load.py "$@"
