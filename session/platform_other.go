//go:build !unix

package session

import "os"

// lockDir opens the lock file; this platform has no advisory lock.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

// syncDir is a no-op: directories cannot be fsynced here.
func syncDir(string, func(*os.File) error) error { return nil }

// fileID returns zeros: files are recognised by os.SameFile only here.
func fileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }
