#!/usr/bin/env bash
# Load benchmark: feedcache vs nginx proxy_cache vs Varnish, with nginx
# serving the same files statically as the reference; interleaved rounds,
# 127.0.0.1 only, bounded (about 8 minutes with the defaults on 2 cores).
#   bash benches/load.sh [--rounds 3] [--seconds 3] [--herd 200] [--only 10k,cold]
#                        [--targets feedcache,nginx-cache,varnish,static] [--json out.json] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
missing=()
for p in nginx wrk varnish curl; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start system-wide nginx/varnish services; the benchmark
# runs its own instances on free ports and does not need or touch those.
cargo build --release --quiet
exec python3 benches/load.py "$@"
