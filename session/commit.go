package session

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"syscall"
)

// CheckDestination checks, at Create-Session time, that rel (a slash
// separated path from protocol.CleanRemotePath) can become a file inside
// root: it must not be a directory, must not exist unless overwrite is
// set, and no existing parent may be something other than a directory.
// Missing parents are fine; they are created at commit time. Symbolic
// links are followed only while they stay inside root.
func CheckDestination(root, rel string, overwrite bool) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("opening upload root: %w", err)
	}
	defer r.Close()
	return checkDestination(r, rel, overwrite)
}

func checkDestination(r *os.Root, rel string, overwrite bool) error {
	fi, err := r.Stat(rel)
	switch {
	case err == nil:
		if fi.IsDir() {
			return ErrDestinationIsDir
		}
		if !overwrite {
			return ErrDestinationExists
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: not a regular file", ErrInvalidDestination)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return destinationError(err)
	}
	// Walk up to the nearest existing parent: it must be a directory.
	for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
		fi, err := r.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return destinationError(err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %s is not a directory", ErrInvalidDestination, dir)
		}
		break
	}
	return nil
}

// destinationError classifies errors of path resolution inside a root.
func destinationError(err error) error {
	var pe *fs.PathError
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) ||
		(errors.As(err, &pe) && pe.Err.Error() == "path escapes from parent") {
		return fmt.Errorf("%w: %v", ErrInvalidDestination, err)
	}
	return err
}

// Commit places the complete upload at its destination: it fsyncs the
// data file, creates missing parent directories inside the root, and
// links the data file into place (or, across file systems, copies it to a
// temporary file next to the destination, fsyncs it and renames it), then
// fsyncs the destination directory. No partial file is ever visible at the
// destination. Without overwrite, an existing destination fails with
// ErrDestinationExists, checked atomically by the link. The data file
// stays in the session until it is closed. Commit is idempotent. The
// caller holds the request lock.
func (s *Session) Commit(overwrite bool) error {
	st := s.State()
	if st.Committed {
		return nil
	}
	if !st.Complete() {
		return ErrIncomplete
	}
	if st.DataDiscarded {
		return errors.New("committing a session whose data was discarded")
	}
	f, err := os.OpenFile(s.DataPath(), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening data file: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing data file: %w", err)
	}
	r, err := os.OpenRoot(st.Root)
	if err != nil {
		return fmt.Errorf("opening upload root: %w", err)
	}
	defer r.Close()
	if err := checkDestination(r, st.Path, overwrite); err != nil {
		if errors.Is(err, ErrDestinationExists) && s.isDestination(r, st.Path) {
			// A crash after the link but before the state update.
			s.update(func(st *State) { st.Committed = true })
			return s.persist(false)
		}
		return err
	}
	if dir := path.Dir(st.Path); dir != "." {
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return destinationError(fmt.Errorf("creating destination directories: %w", err))
		}
	}
	linked, err := placeFile(r, st.Path, s.DataPath(), "."+st.ID.Bare()+".bits-tmp", overwrite)
	if err != nil {
		return err
	}
	s.update(func(st *State) { st.Committed = true })
	if linked {
		// A hard link tells recovery the upload was committed (see
		// recover.go); the state is written with Finish, which follows.
		return nil
	}
	// A copy leaves nothing recovery could tell from an unrelated file.
	return s.persist(false)
}

// isDestination reports whether the destination is the session's data
// file itself.
func (s *Session) isDestination(r *os.Root, rel string) bool {
	dfi, err := r.Lstat(rel)
	if err != nil {
		return false
	}
	sfi, err := os.Stat(s.DataPath())
	return err == nil && os.SameFile(dfi, sfi)
}
