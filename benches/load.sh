#!/usr/bin/env bash
# Load benchmark: feedcache vs nginx proxy_cache vs nginx static, one run,
# 127.0.0.1 only, bounded (about 6 minutes with the defaults).
#   bash benches/load.sh [--rounds 3] [--seconds 3] [--herd 200]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
missing=()
for p in nginx wrk curl; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --quiet
exec python3 benches/load.py "$@"
