#!/usr/bin/env bash
# Peak RSS of feedcache while 10 clients download one cold 200 MB package at
# once (coalesced into one upstream fetch), then again from the cache.
# All traffic stays on 127.0.0.1; bounded by curl --max-time.
# Usage: benches/big_package_rss.sh [size_mb] [clients]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-200}
clients=${2:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port)
mkdir -p "$work/origin/v3" "$work/origin/v3-flatcontainer/big/1.0.0"
head -c $((size_mb * 1024 * 1024)) /dev/urandom > "$work/origin/v3-flatcontainer/big/1.0.0/big.1.0.0.nupkg"
cat > "$work/origin/v3/index.json" <<JSON
{"version":"3.0.0","resources":[{"@id":"http://127.0.0.1:$up_port/v3-flatcontainer/","@type":"PackageBaseAddress/3.0.0"}]}
JSON
(cd "$work/origin" && exec python3 -m http.server "$up_port" --bind 127.0.0.1 >/dev/null 2>&1) &

RUST_LOG=warn target/release/feedcache --listen 127.0.0.1:0 --cache-dir "$work/cache" \
  --upstream "http://127.0.0.1:$up_port/v3/index.json" > "$work/fc.out" &
fc_pid=$!
for _ in $(seq 100); do grep -q listening "$work/fc.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^feedcache listening on //p' "$work/fc.out")
for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done

url="$base/v3/flatcontainer/big/1.0.0/big.1.0.0.nupkg"
want=$(sha256sum < "$work/origin/v3-flatcontainer/big/1.0.0/big.1.0.0.nupkg" | cut -d' ' -f1)
run_round() {
  local pids=()
  for i in $(seq "$clients"); do
    curl -s --max-time 300 "$url" | sha256sum | cut -d' ' -f1 > "$work/sum.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  for i in $(seq "$clients"); do
    [ "$(cat "$work/sum.$i")" = "$want" ] || { echo "client $i got different bytes"; exit 1; }
  done
}
# VmRSS/VmHWM count mapped page cache too (bodies are served from mmap);
# RssAnon is the process's own memory.
rss() { awk '/VmRSS|VmHWM|RssAnon|RssFile/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$fc_pid/status"; echo; }

echo "before:           $(rss)"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(ms); run_round
echo "cold, $clients clients: $(rss) ($(( $(ms) - start )) ms)"
start=$(ms); run_round
echo "warm, $clients clients: $(rss) ($(( $(ms) - start )) ms)"
echo "package: $size_mb MB; every client received identical, correct bytes"
