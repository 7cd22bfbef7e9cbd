#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and the
# end-to-end NuGet.exe test (which must run here, not skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
FEEDCACHE_REQUIRE_E2E=1 cargo test --all-targets --locked
