//go:build unix

package session

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on path, failing at once when
// another process (or another Store in this one) holds it. The lock is
// released when the returned file is closed or the process dies.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("the directory is in use by another server")
		}
		return nil, err
	}
	return f, nil
}

// syncDir fsyncs a directory with fsync, so that entries created, renamed
// or removed in it are durable.
func syncDir(dir string, fsync func(*os.File) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// fileID returns the device and inode numbers of a file.
func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // the fields' types differ between platforms
	}
	return 0, 0
}
