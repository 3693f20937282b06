//go:build unix && !linux

package session

import "golang.org/x/sys/unix"

// renameNoReplace reports ENOSYS: this platform's atomic no-replace rename
// is not wired up, so callers fall back to a check before the rename.
func renameNoReplace(int, string, string) error { return unix.ENOSYS }
