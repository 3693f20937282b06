#!/usr/bin/env bash
# Runs every check of the project on a fresh machine that has Go: formatting,
# go vet, golangci-lint (installed into .bin at a pinned version), all tests
# with the race detector (the s3store tests against versitygw, an S3
# gateway also installed into .bin), a bounded run of every fuzz target,
# and the xcaddy build with the binary-level tests run against it.
#
# Environment: FUZZTIME (default 300000x) bounds each fuzz target; SKIP_XCADDY=1
# skips the xcaddy build. The default budget counts executions rather than
# seconds: with a duration, Go 1.26's fuzzing coordinator can report its own
# deadline as a failure ("context deadline exceeded", no failing input) when a
# worker is busy at that moment, which makes a loaded machine fail at random.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
fuzztime="${FUZZTIME:-300000x}"

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet"
go vet ./...

step "golangci-lint ${GOLANGCI_LINT_VERSION:=v2.15.0}"
if [ ! -x .bin/golangci-lint ] || ! .bin/golangci-lint version 2>/dev/null | grep -q "${GOLANGCI_LINT_VERSION#v}"; then
	GOBIN="$PWD/.bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_LINT_VERSION}"
fi
.bin/golangci-lint run ./...

step "versitygw v1.8.0 (the S3 gateway the s3store tests run against)"
if [ ! -x .bin/versitygw ]; then
	GOBIN="$PWD/.bin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
export CADDY_BITS_VERSITYGW="$PWD/.bin/versitygw"

step "go test -race"
go test -race -count=1 -timeout 40m ./...

step "fuzz (${fuzztime} per target)"
for pkg in $(go list ./...); do
	dir="$(go list -f '{{.Dir}}' "$pkg")"
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "-- $pkg $target"
		go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s
	done
done

if [ "${SKIP_XCADDY:-}" != 1 ]; then
	step "xcaddy build"
	OUTPUT="$PWD/caddy" ./xcaddy.sh
	./caddy adapt --config Caddyfile.example >/dev/null
	step "binary tests against the xcaddy build"
	CADDY_BITS_BINARY="$PWD/caddy" go test -count=1 -timeout 20m -run 'Binary|Kill|Example' ./caddymodule ./cmd/bitsup
fi

step "all checks passed"
