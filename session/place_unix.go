//go:build unix

package session

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// placeFile makes the file src appear at rel inside the root r, complete
// or not at all, and durably. It works on a descriptor of the destination
// directory opened through r, so a symbolic link swapped in after the
// checks cannot redirect it outside the root. The fast path is a hard
// link, which needs no copy and, without overwrite, fails atomically if
// the destination exists; sy makes it durable with one sync where the file
// system allows (see syncer). Across file systems, or where hard links are
// not supported, src is copied to tmpName in the destination directory,
// fsynced and then moved into place, and the directory is fsynced.
func placeFile(r *os.Root, rel string, src *os.File, tmpName string, overwrite bool, sy *syncer) error {
	d, err := r.Open(path.Dir(rel))
	if err != nil {
		return destinationError(fmt.Errorf("opening destination directory: %w", err))
	}
	defer d.Close()
	dfd := int(d.Fd())
	base := path.Base(rel)
	_ = unix.Unlinkat(dfd, tmpName, 0)

	oneSync, err := sy.beforeLink(src, d)
	if err != nil {
		return err
	}
	target := base
	if overwrite {
		target = tmpName
	}
	err = unix.Linkat(unix.AT_FDCWD, src.Name(), dfd, target, 0)
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		return ErrDestinationExists
	case linkUnsupported(err):
		if err := copyToTemp(dfd, tmpName, src, sy.fsync); err != nil {
			return err
		}
		if !overwrite {
			err := renameNoReplace(dfd, tmpName, base)
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
				// No atomic no-replace rename here: fall back to a check
				// right before the rename.
				if _, serr := r.Lstat(rel); serr == nil {
					err = unix.EEXIST
				} else {
					err = unix.Renameat(dfd, tmpName, dfd, base)
				}
			}
			if err != nil {
				_ = unix.Unlinkat(dfd, tmpName, 0)
				if errors.Is(err, unix.EEXIST) {
					return ErrDestinationExists
				}
				return destinationError(fmt.Errorf("moving upload into place: %w", err))
			}
			return sy.afterLink(nil, d, false)
		}
		if err := replaceWith(dfd, tmpName, base); err != nil {
			return err
		}
		return sy.afterLink(nil, d, false)
	default:
		return destinationError(fmt.Errorf("linking upload into place: %w", err))
	}
	if overwrite {
		if err := replaceWith(dfd, tmpName, base); err != nil {
			return err
		}
	}
	return sy.afterLink(src, d, oneSync)
}

// replaceWith renames tmp over name inside the directory dfd. Renaming a
// link over another link to the same file (a commit repeated after a
// crash) succeeds without removing the source, so tmp is removed after.
func replaceWith(dfd int, tmp, name string) error {
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return destinationError(fmt.Errorf("moving upload into place: %w", err))
	}
	_ = unix.Unlinkat(dfd, tmp, 0)
	return nil
}

// linkUnsupported reports whether a link failed because the file systems
// differ or do not support hard links.
func linkUnsupported(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EMLINK)
}

// copyToTemp copies src into a new file named tmp in the directory dfd and
// fsyncs it.
func copyToTemp(dfd int, tmp string, src *os.File, fsync func(*os.File) error) error {
	in := io.NewSectionReader(src, 0, 1<<62)
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("creating temporary file next to the destination: %w", err)
	}
	out := os.NewFile(uintptr(fd), tmp)
	_, err = io.Copy(out, in)
	if err == nil {
		err = fsync(out)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return destinationError(fmt.Errorf("copying upload next to the destination: %w", err))
	}
	return nil
}
