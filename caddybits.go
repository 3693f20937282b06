// Package caddybits plugs the bits_upload HTTP handler into Caddy. Import
// it for its side effects, as `xcaddy build --with
// github.com/caddy-bits/caddy-bits` does:
//
//	import _ "github.com/caddy-bits/caddy-bits"
//
// The handler itself lives in package caddymodule, the BITS wire layer in
// package protocol and the session store in package session.
package caddybits

import (
	// Registers http.handlers.bits_upload and the bits_upload directive.
	_ "github.com/caddy-bits/caddy-bits/caddymodule"
)
