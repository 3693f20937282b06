//go:build !unix

package session

import "os"

// lockDir opens the lock file; this platform has no advisory lock.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

// syncDir is a no-op: directories cannot be fsynced here.
func syncDir(string) error { return nil }

// linkCount returns 1: commits on this platform copy, never link.
func linkCount(os.FileInfo) uint64 { return 1 }
