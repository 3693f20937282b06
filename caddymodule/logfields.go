package caddymodule

import (
	"encoding/hex"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// hexDigest formats a digest for logs.
func hexDigest(b []byte) string { return hex.EncodeToString(b) }

// errorText returns the message of a protocol error or of an error.
func errorText(perr *protocol.Error, err error) string {
	if perr != nil {
		return perr.Error()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}
