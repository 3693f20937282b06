//go:build !linux

package session

import "sync/atomic"

// canFakeNoOpenat2 says whether tests can make openTree fall back to
// *os.Root.
const canFakeNoOpenat2 = false

// noOpenat2 stands in for the Linux switch.
var noOpenat2 atomic.Bool
