//go:build linux

package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"

	"golang.org/x/sys/unix"
)

// Stage implements [StreamPlacer]: the bytes go into an unnamed temporary
// file (O_TMPFILE) in the destination directory, and reach the disk before
// [Staged.Place] links the file into place (see syncer). The
// destination's missing parent directories are created first, each
// fsynced into its parent.
func (ls *LocalStorage) Stage(_ context.Context, dest Destination, r io.Reader, n int64) (Staged, error) {
	t, err := openTree(dest.Root)
	if err != nil {
		return nil, fmt.Errorf("opening upload root: %w", err)
	}
	defer t.Close()
	d, err := t.OpenDir(path.Dir(dest.Path))
	if errors.Is(err, fs.ErrNotExist) {
		if err := ls.makeParents(dest); err != nil {
			return nil, err
		}
		d, err = t.OpenDir(path.Dir(dest.Path))
	}
	if err != nil {
		return nil, destinationError(fmt.Errorf("opening destination directory: %w", err))
	}
	st := &staged{ls: ls, rel: dest.Path}
	st.dir = d
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		st.Close()
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil, ErrNotStaged
		}
		return nil, fmt.Errorf("creating a temporary file next to the destination: %w", err)
	}
	st.f = os.NewFile(uintptr(fd), "staged upload")
	st.size, err = copyAt(st.f, 0, r, n, nil)
	if err == nil {
		st.oneSync, err = ls.sy.beforeLink(st.f, d)
	}
	if err == nil {
		fi, serr := st.f.Stat()
		if serr != nil {
			err = fmt.Errorf("reading staged upload: %w", serr)
		} else {
			st.rec.Dev, st.rec.Ino = fileID(fi)
		}
	}
	return st, err
}

// makeParents creates the missing parent directories of dest, each
// fsynced into its parent.
func (ls *LocalStorage) makeParents(dest Destination) error {
	r, err := os.OpenRoot(dest.Root)
	if err != nil {
		return fmt.Errorf("opening upload root: %w", err)
	}
	defer r.Close()
	return mkdirAllSynced(r, path.Dir(dest.Path), ls.sy.fsync)
}

// staged is an upload in an unnamed temporary file.
type staged struct {
	ls      *LocalStorage
	rel     string
	dir     *os.File
	f       *os.File
	size    int64
	rec     localRecord
	oneSync bool // one fsync of the file makes the placement durable
	placed  bool
}

func (s *staged) Size() int64 { return s.size }

func (s *staged) Record() json.RawMessage {
	b, _ := json.Marshal(s.rec)
	return b
}

func (s *staged) NewReader() io.Reader { return io.NewSectionReader(s.f, 0, s.size) }

// Place implements [Staged]: without overwrite the file is linked at its
// name, which fails atomically if the name exists; with overwrite it is
// linked at a temporary name and renamed over the destination. The
// directory is fsynced.
func (s *staged) Place(overwrite bool) error {
	dfd := int(s.dir.Fd())
	base := path.Base(s.rel)
	target := base
	if overwrite {
		target = "." + strconv.FormatUint(s.rec.Ino, 10) + ".bits-tmp"
		_ = unix.Unlinkat(dfd, target, 0)
	}
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(s.f.Fd())), dfd, target, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.ENOENT) {
		// No /proc: linking a descriptor needs CAP_DAC_READ_SEARCH.
		err = unix.Linkat(int(s.f.Fd()), "", dfd, target, unix.AT_EMPTY_PATH)
	}
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		return ErrDestinationExists
	default:
		return destinationError(fmt.Errorf("linking upload into place: %w", err))
	}
	if overwrite {
		if err := replaceWith(dfd, target, base); err != nil {
			return err
		}
	}
	s.placed = true
	return s.ls.sy.afterLink(s.f, s.dir, s.oneSync)
}

func (s *staged) Close() error {
	if s.f != nil {
		_ = s.f.Close()
	}
	if s.dir != nil {
		return s.dir.Close()
	}
	return nil
}

// Interface guard
var _ StreamPlacer = (*LocalStorage)(nil)
