// Command caddy is Caddy with its standard modules and the bits_upload
// handler, for `go run` and `go build` without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-bits/caddy-bits"
)

func main() {
	caddycmd.Main()
}
