#!/usr/bin/env bash
# Runs the benchmarks in one go: builds Caddy with the module (./cmd/caddy
# via go build, or takes the binary named by $CADDY) and cmd/bitsbench, then
# measures bits_upload against the baseline servers in the same run, the
# servers taking turns, and prints for each server its rate, the ratio to
# the fsync baseline, its CPU time and the load generator's, its peak
# memory above idle and its Ack latencies. See docs/benchmarks.md.
#
# Extra arguments go to bitsbench, e.g.:
#
#	CADDY=/tmp/caddy bench/run.sh -scenarios small,tiny -runs 5
#	bench/run.sh -scenarios small -small-files 500
#	bench/run.sh -scenarios syscalls            # needs strace
#	bench/run.sh -scenarios s3 -s3-size 256MiB,64MiB   # needs versitygw (test.sh installs it)
#
# BENCH_DIR sets the scratch directory (default: a temporary one, removed
# at the end).
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
echo "go: $(go version | cut -d' ' -f3-), cpus: $(nproc 2>/dev/null || echo ?), $(uname -sr), commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
"$out/bitsbench" -caddy "$caddy" -dir "${BENCH_DIR:-$out/work}" "$@"
