package session

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// storageNameFile names, inside a store's directory, the file that records
// which storage the store's sessions keep their bytes in.
const storageNameFile = "storage"

// defaultStorageName is the name of [LocalStorage], and of the storage of
// a directory written before the name was recorded.
const defaultStorageName = "local"

// ErrStorageMismatch is returned by Open for a directory whose sessions
// keep their bytes in another storage than the one given: opening it
// would lose them.
var ErrStorageMismatch = errors.New("session directory belongs to another storage")

// checkStorageName compares the storage recorded in dir with name and
// records name when there is nothing to compare, or nothing to lose: a
// directory without sessions may change its storage.
func checkStorageName(dir, activeDir, name string, fsync func(*os.File) error) error {
	path := filepath.Join(dir, storageNameFile)
	b, err := os.ReadFile(path)
	recorded := strings.TrimSpace(string(b))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		recorded = ""
	case err != nil:
		return fmt.Errorf("reading the storage of session directory %s: %w", dir, err)
	}
	if recorded == name {
		return nil
	}
	held, err := holdsSessions(activeDir)
	if err != nil {
		return err
	}
	if held {
		if recorded == "" {
			recorded = defaultStorageName
		}
		if recorded != name {
			return fmt.Errorf("%w: %s holds sessions stored in %s, so it cannot serve storage %s; give that storage another session directory",
				ErrStorageMismatch, dir, recorded, name)
		}
	}
	return writeFileSynced(path, []byte(name+"\n"), fsync)
}

// holdsSessions reports whether dir holds the state of any session, in the
// flat layout or in an earlier version's directory per session.
func holdsSessions(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), stateSuffix) {
			return true, nil
		}
	}
	return false, nil
}

// writeFileSynced replaces the file at path with b durably: through a
// temporary file that is synced and renamed, and a synced directory.
func writeFileSynced(path string, b []byte, fsync func(*os.File) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDirOf(path, fsync)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
