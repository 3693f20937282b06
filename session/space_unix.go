//go:build unix

package session

import (
	"fmt"
	"syscall"
)

// FreeSpace returns the number of bytes available to unprivileged users on
// the file system that holds path.
func FreeSpace(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("reading free space of %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil //nolint:unconvert // field types differ between platforms
}
