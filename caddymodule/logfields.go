package caddymodule

import "encoding/hex"

// hexDigest formats a digest for logs.
func hexDigest(b []byte) string { return hex.EncodeToString(b) }
