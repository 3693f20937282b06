package testutil

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
)

// FreeSpace returns the bytes available to unprivileged users on the file
// system that holds path.
func FreeSpace(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize) //nolint:unconvert // field types differ between platforms
}

// WriteFiller writes a file of n bytes at path, to take space.
func WriteFiller(t testing.TB, path string, n int) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xAA}, n), 0o600); err != nil {
		t.Fatalf("writing filler %s: %v", path, err)
	}
}

// FillUp writes a file at path until its file system is full.
func FillUp(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4096, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", path, err)
				}
				break
			}
		}
	}
}
