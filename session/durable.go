package session

import (
	"fmt"
	"os"
)

// syncer makes what the store writes durable. Its functions are fields so
// that tests can record every call.
type syncer struct {
	// fsync is fsync(2): the file's data and metadata reach the disk.
	fsync func(*os.File) error
	// writeBack writes a file's data to the disk and waits for it, without
	// committing metadata (sync_file_range on Linux; an fsync elsewhere).
	writeBack func(*os.File) error
	// syncsNewNames reports whether, on the file system of the directory
	// dir, fsync of a file also makes durable the names just linked to it
	// in that directory (see syncsNewNames).
	syncsNewNames func(dir *os.File) bool
}

// defaultSyncer is the syncer of the running system.
func defaultSyncer() *syncer {
	return &syncer{fsync: (*os.File).Sync, writeBack: writeBack, syncsNewNames: syncsNewNames}
}

// beforeLink makes the data of f, about to be linked into the directory
// dir, safe to become visible: after a power loss, a name that survives
// must name all of its bytes. Where fsync of the file will also commit the
// name (see afterLink), writing the data back suffices and the metadata is
// committed once, after the link; elsewhere the file is fsynced now.
func (s *syncer) beforeLink(f, dir *os.File) (oneSync bool, err error) {
	if s.syncsNewNames(dir) {
		if err := s.writeBack(f); err != nil {
			return false, fmt.Errorf("writing upload back to disk: %w", err)
		}
		return true, nil
	}
	if err := s.fsync(f); err != nil {
		return false, fmt.Errorf("syncing upload: %w", err)
	}
	return false, nil
}

// afterLink makes the name just linked to f in dir durable: by fsyncing f
// where that commits the name too (one sync for the whole placement), else
// by fsyncing dir.
func (s *syncer) afterLink(f, dir *os.File, oneSync bool) error {
	target, what := dir, "destination directory"
	if oneSync {
		target, what = f, "placed upload"
	}
	if err := s.fsync(target); err != nil {
		return fmt.Errorf("syncing %s: %w", what, err)
	}
	return nil
}
