#!/usr/bin/env bash
# Runs every benchmark in one go: builds Caddy with the module (./caddy via
# go build, or the binary named by $CADDY) and cmd/bitsbench, then measures
# bits_upload against the baseline servers in the same run and prints the
# throughput, the ratio to the baseline and the peak memory of each server.
# Extra arguments go to bitsbench, e.g. -scenarios small -small-files 500.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
caddy="${CADDY:-}"
if [ -z "$caddy" ]; then
	go build -o "$out/caddy" ./cmd/caddy
	caddy="$out/caddy"
fi
go build -o "$out/bitsbench" ./cmd/bitsbench
echo "go: $(go version | cut -d' ' -f3-), cpus: $(nproc 2>/dev/null || echo ?), $(uname -sr)"
"$out/bitsbench" -caddy "$caddy" -dir "${BENCH_DIR:-$out/work}" "$@"
