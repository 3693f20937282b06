//go:build linux

package session

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noOpenat2 is set once openat2 has failed with ENOSYS (a kernel before
// 5.6, or a sandbox that hides the call): from then on every tree is an
// *os.Root.
var noOpenat2 atomic.Bool

// errPathEscapes is the error of a path that would leave its root, worded
// as os.Root words it.
var errPathEscapes = errors.New("path escapes from parent")

// errUseOSRoot says that openat2 could not resolve a path and an *os.Root
// must.
var errUseOSRoot = errors.New("openat2 is not available")

// openTree opens an upload root as a tree: a beneathTree where the
// kernel has openat2, else an *os.Root.
func openTree(root string) (tree, error) {
	if noOpenat2.Load() {
		return openOSTree(root)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	return &beneathTree{fd: fd, root: root}, nil
}

// beneathTree resolves each path with one openat2 call relative to the
// root's descriptor. RESOLVE_BENEATH refuses a path that would leave the
// root through ".." or a symbolic link, and RESOLVE_NO_MAGICLINKS refuses
// the links of /proc. It confines paths as os.Root does, but where os.Root
// opens and closes every directory on the way, it makes one system call
// per path, which a small upload feels (docs/benchmarks.md).
type beneathTree struct {
	fd   int      // the root, opened with O_PATH
	root string   // the root's path
	os   *os.Root // the root for os.Root to resolve in, once openat2 could not
}

// open opens name below the root with flags through openat2. It returns
// errUseOSRoot when openat2 cannot resolve name.
func (t *beneathTree) open(name string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC), //nolint:gosec // open flags are not negative
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	// EAGAIN: a rename or a mount raced the resolution; the kernel asks
	// for another try.
	for range 8 {
		fd, err := unix.Openat2(t.fd, name, &how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EXDEV):
			return -1, errPathEscapes
		case errors.Is(err, unix.ENOSYS):
			noOpenat2.Store(true)
			return -1, errUseOSRoot
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.E2BIG), errors.Is(err, unix.ENAMETOOLONG):
			// A seccomp filter that refuses openat2, a kernel that does
			// not know the resolve flags, or a path longer than one
			// system call takes (os.Root walks it a name at a time):
			// os.Root answers instead.
			return -1, errUseOSRoot
		default:
			return -1, err
		}
	}
	return -1, errUseOSRoot
}

// resolve opens name below the root with flags, for the operation op. It
// returns the root as an *os.Root instead, opened on first use, when
// openat2 cannot resolve name: the caller then asks it.
func (t *beneathTree) resolve(op, name string, flags int) (int, *os.Root, error) {
	fd, err := t.open(name, flags)
	switch {
	case errors.Is(err, errUseOSRoot):
		if t.os == nil {
			r, err := os.OpenRoot(t.root)
			if err != nil {
				return -1, nil, err
			}
			t.os = r
		}
		return -1, t.os, nil
	case err != nil:
		return -1, nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return fd, nil, nil
}

// Stat implements [tree].
func (t *beneathTree) Stat(name string) (fs.FileInfo, error) {
	fd, r, err := t.resolve("statat", name, unix.O_PATH)
	switch {
	case r != nil:
		return r.Stat(name)
	case err != nil:
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return f.Stat()
}

// OpenDir implements [tree].
func (t *beneathTree) OpenDir(name string) (*os.File, error) {
	fd, r, err := t.resolve("openat", name, unix.O_RDONLY|unix.O_DIRECTORY)
	switch {
	case r != nil:
		return r.Open(name)
	case err != nil:
		return nil, err
	}
	return os.NewFile(uintptr(fd), filepath.Join(t.root, name)), nil
}

// Close implements [tree].
func (t *beneathTree) Close() error {
	if t.os != nil {
		_ = t.os.Close()
	}
	return unix.Close(t.fd)
}

// Interface guard
var _ tree = (*beneathTree)(nil)
