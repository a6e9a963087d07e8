#!/usr/bin/env bash
# Builds the relay image FROM scratch: one static binary (CGO off, time zone
# database embedded, so schedules in America/New_York work without
# /usr/share/zoneinfo) plus the host's CA bundle. Nothing is pulled.
#
#   scripts/build-images.sh            # relay:<version> and relay:latest
#   RELAY_VERSION=1.2.0 scripts/build-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version="${RELAY_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
ca="${RELAY_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[ -r "$ca" ] || { echo "build-images: no CA bundle at $ca (set RELAY_CA_BUNDLE)" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
echo "building relay $version (static, linux/amd64 unless GOARCH is set)"
CGO_ENABLED=0 GOOS=linux go build -trimpath -tags timetzdata \
  -ldflags "-s -w -X main.relayVersion=$version" -o "$ctx/relay" ./services/cmd/relay
cp "$ca" "$ctx/ca-certificates.crt"   # copied at build time, never committed
mkdir "$ctx/empty"
cp deploy/Dockerfile "$ctx/Dockerfile"
docker build -q -t "relay:$version" -t relay:latest "$ctx" >/dev/null
echo "built relay:$version and relay:latest ($(docker image inspect relay:latest --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}'))"
