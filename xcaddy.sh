#!/usr/bin/env bash
# Builds ./caddy: Caddy plus the bits_upload module from this checkout, with
# pinned versions of xcaddy and Caddy. Extra arguments go to `xcaddy build`,
# e.g. `./xcaddy.sh --with github.com/mholt/caddy-ratelimit`.
#
# Environment: XCADDY_VERSION and CADDY_VERSION override the pins, OUTPUT the
# path of the binary (default ./caddy).
set -euo pipefail

XCADDY_VERSION="${XCADDY_VERSION:-v0.4.5}"
CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
output="${OUTPUT:-$here/caddy}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# xcaddy replaces this module with the local checkout, then runs `go get` on
# it, which asks the module proxy for versions of a module path it may never
# have seen. Some proxies answer that with an error status (400 or 403)
# rather than 404; behind ",direct" Go treats that as fatal. A "|off"
# fallthrough turns any error into "not available", which is fine for a
# replaced module, and every real dependency still comes from the proxy.
proxy="$(go env GOPROXY)"
case "$proxy" in
	off | *"|off") ;;
	*)
		proxy="${proxy%,direct}"
		export GOPROXY="${proxy}|off"
		;;
esac

cd "$here"
go run "github.com/caddyserver/xcaddy/cmd/xcaddy@${XCADDY_VERSION}" build "$CADDY_VERSION" \
	--output "$output" \
	--with "github.com/caddy-bits/caddy-bits=$here" \
	"$@"
"$output" list-modules | grep -qx 'http.handlers.bits_upload' || {
	echo "xcaddy.sh: $output does not contain http.handlers.bits_upload" >&2
	exit 1
}
echo "xcaddy.sh: built $output ($("$output" version | head -n 1))"
