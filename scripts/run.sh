#!/usr/bin/env bash
# Runs feedcache on its embedded defaults (127.0.0.1:5000 -> nuget.org, ./cache).
# Extra arguments are passed to feedcache, e.g. scripts/run.sh -c conf/feedcache.toml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh build
exec cargo run --release -- "$@"
