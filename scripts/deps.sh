#!/usr/bin/env bash
# Installs the system packages feedcache needs, only when they are missing.
#   scripts/deps.sh build   cmake (pingora builds zlib-ng with it)
#   scripts/deps.sh test    build + mono and NuGet.exe for the end-to-end test
#   scripts/deps.sh bench   build + nginx, Varnish, wrk, curl for benches/
set -euo pipefail

mode=${1:-build}
build_pkgs=(cmake)
# NuGet.exe 5.8 loads these assemblies; mono-runtime alone is not enough.
test_pkgs=(
  mono-runtime
  libmono-system-componentmodel-composition4.0-cil
  libmono-system-componentmodel-dataannotations4.0-cil
  libmono-windowsbase4.0-cil
  libmono-microsoft-build-utilities-v4.0-4.0-cil
  libmono-microsoft-csharp4.0-cil
  libmono-system-data4.0-cil
  libmono-system-data-services-client4.0-cil
  libmono-system-xml-linq4.0-cil
  libmono-system-net-http4.0-cil
  libmono-system-net-http-webrequest4.0-cil
  libmono-system-runtime-serialization4.0-cil
  libmono-system-io-compression4.0-cil
  libmono-system-io-compression-filesystem4.0-cil
  libmono-system-security4.0-cil
  libmono-system-servicemodel4.0a-cil
  libmono-system-identitymodel4.0-cil
  # Names the certificate file in mono's trust store (the HTTPS end-to-end test).
  openssl
)

want=("${build_pkgs[@]}")
if [ "$mode" = bench ]; then
  # The Debian packages start system-wide nginx/varnish services; the
  # benchmarks run their own instances on free ports and leave those alone.
  want+=(nginx varnish wrk curl)
fi
if [ "$mode" = test ]; then
  want+=("${test_pkgs[@]}")
  command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$mode" = test ] && [ ! -d "$(npm root -g)/nuget-exe" ]; then
  echo "installing: nuget-exe (npm)"
  $sudo npm install -g --silent nuget-exe@5.8 >/dev/null
fi

# The S3-compatible server of the cluster tests, built once into a fixed
# root and reused by every later run: Garage (a distributed S3 store, ~15 min
# on 2 cores), or s3s-fs (S3 over a directory, ~4 min) should Garage not build.
tools=${FEEDCACHE_TOOLS:-$HOME/.cache/feedcache-tools}
if [ "$mode" = test ] && [ ! -x "$tools/bin/garage" ] && [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "installing: garage 2.5.0 into $tools (cargo; ~15 min on 2 cores, once)"
  if ! cargo install --locked --quiet garage@2.5.0 --no-default-features \
      --features bundled-libs,sqlite --root "$tools"; then
    echo "garage did not build; installing s3s-fs 0.14.1 instead (~4 min)"
    cargo install --locked --quiet s3s-fs@0.14.1 --features binary --root "$tools"
  fi
fi
