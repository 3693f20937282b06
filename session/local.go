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
	"path/filepath"
	"sync"
	"sync/atomic"
)

// LocalStorage is the [Storage] of the local file system: a session's
// bytes are one file, <dir>/<guid>.data, and a finished upload is hard
// linked into place (or copied, fsynced and renamed there across file
// systems). It implements [StreamPlacer] where the system can create
// unnamed temporary files (Linux), and its Data implements [DataFile] and
// [DataReader].
type LocalStorage struct {
	dir string
	sy  *syncer
}

// NewLocalStorage returns the local file system storage that keeps
// session data in dir, an absolute directory that must exist.
func NewLocalStorage(dir string) *LocalStorage {
	return &LocalStorage{dir: dir, sy: defaultSyncer()}
}

// dataSuffix ends the name of a session's data file.
const dataSuffix = ".data"

// CheckDestination implements [Storage]. Symbolic links are followed only
// while they stay inside the root, and missing parents are fine: they are
// created when the upload is placed.
func (ls *LocalStorage) CheckDestination(_ context.Context, dest Destination, overwrite bool) error {
	t, err := openTree(dest.Root)
	if err != nil {
		return fmt.Errorf("opening upload root: %w", err)
	}
	defer t.Close()
	return checkDestination(t, dest.Path, overwrite)
}

// Data implements [Storage].
func (ls *LocalStorage) Data(_ context.Context, ref DataRef) (Data, error) {
	id := ref.ID
	d := &localData{ls: ls, j: ref.Journal, path: filepath.Join(ls.dir, id.Bare()+dataSuffix)}
	if len(ref.Record) > 0 {
		if err := json.Unmarshal(ref.Record, &d.rec); err != nil {
			return nil, fmt.Errorf("decoding the record of session %s: %w", id, err)
		}
	}
	fi, err := os.Lstat(d.path)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("data of session %s is not a regular file", id)
		}
		d.size.Store(fi.Size())
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("opening data of session %s: %w", id, err)
	}
	return d, nil
}

// localRecord is what the local storage records in a session's state: the
// identity of an upload placed as a file other than the session's data
// file (staged next to its destination, or copied there across file
// systems), so that recovery can recognise it at its destination.
type localRecord struct {
	Dev uint64 `json:"dev,omitempty"`
	Ino uint64 `json:"ino,omitempty"`
}

// localData is the data file of one session.
type localData struct {
	ls   *LocalStorage
	j    Journal
	path string
	rec  localRecord
	size atomic.Int64

	syncMu sync.Mutex // one Sync at a time
}

func (d *localData) Size() int64  { return d.size.Load() }
func (d *localData) Path() string { return d.path }
func (d *localData) Close() error { return nil }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Append implements [Data]: it writes with one pwrite per buffer at the
// file's end, and cuts a failed buffer off again, so the file's size is
// always the number of bytes held.
func (d *localData) Append(r io.Reader, n int64) (int64, error) {
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening data file: %w", err)
	}
	start := d.size.Load()
	written, err := copyAt(f, start, r, n, func(k int64) { d.size.Store(start + k) })
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing data file: %w", cerr)
	}
	return written, err
}

// copyAt copies n bytes from r to f at offset start, with a pooled
// buffer, calling progress with the bytes written so far after each
// buffer. A failed write is cut off again, so f ends at start plus the
// bytes reported written. A reader that ends early is reported with
// ErrBodyIncomplete.
func copyAt(f *os.File, start int64, r io.Reader, n int64, progress func(int64)) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var written int64
	for written < n {
		want := min(int64(len(buf)), n-written)
		k, rerr := io.ReadFull(r, buf[:want])
		if k > 0 {
			if _, err := f.WriteAt(buf[:k], start+written); err != nil {
				_ = f.Truncate(start + written)
				return written, fmt.Errorf("writing data file: %w", err)
			}
			written += int64(k)
			if progress != nil {
				progress(written)
			}
		}
		if rerr != nil {
			if written < n {
				return written, fmt.Errorf("%w: %d of %d bytes: %v", ErrBodyIncomplete, written, n, rerr)
			}
			break
		}
	}
	return written, nil
}

// Sync implements [Data].
func (d *localData) Sync() error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening data file: %w", err)
	}
	err = d.ls.sy.fsync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing data file: %w", err)
	}
	return nil
}

// Truncate implements [Data].
func (d *localData) Truncate(n int64) error {
	if n >= d.size.Load() {
		return nil
	}
	if err := os.Truncate(d.path, n); err != nil {
		return fmt.Errorf("truncating data file: %w", err)
	}
	d.size.Store(n)
	return nil
}

// NewReader implements [DataReader].
func (d *localData) NewReader(off int64) (io.ReadCloser, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return nil, fmt.Errorf("opening data file: %w", err)
	}
	return &sectionFile{SectionReader: io.NewSectionReader(f, off, d.size.Load()-off), f: f}, nil
}

// sectionFile reads a section of a file and closes the file.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionFile) Close() error { return s.f.Close() }

// Place implements [Data]: it creates missing parent directories inside
// the root (each fsynced into its parent, from the top down), and links
// the data file into place, or, across file systems, copies it to a
// temporary file next to the destination, fsyncs it and renames it. The
// bytes are on disk before the name appears, and the name is durable
// before Place returns (see syncer). Without overwrite, the link decides
// atomically that the destination is free. The data file stays in the
// session until it is removed.
func (d *localData) Place(_ context.Context, dest Destination, overwrite bool) error {
	r, err := os.OpenRoot(dest.Root)
	if err != nil {
		return fmt.Errorf("opening upload root: %w", err)
	}
	defer r.Close()
	if err := checkDestination(r, dest.Path, overwrite); err != nil {
		if errors.Is(err, ErrDestinationExists) && d.placedIn(r, dest.Path) {
			// Placed before a crash that came before the state update.
			return nil
		}
		return err
	}
	if err := mkdirAllSynced(r, path.Dir(dest.Path), d.ls.sy.fsync); err != nil {
		return err
	}
	f, err := os.OpenFile(d.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening data file: %w", err)
	}
	defer f.Close()
	if err := placeFile(r, dest.Path, f, "."+filepath.Base(d.path)+".bits-tmp", overwrite, d.ls.sy); err != nil {
		return err
	}
	if d.placedIn(r, dest.Path) {
		return nil
	}
	// Copied, not linked: record the copy's identity, so that a restart
	// recognises it.
	fi, err := r.Lstat(dest.Path)
	if err != nil {
		return fmt.Errorf("reading placed upload: %w", err)
	}
	d.rec.Dev, d.rec.Ino = fileID(fi)
	b, err := json.Marshal(d.rec)
	if err != nil {
		return err
	}
	return d.j.Record(b, false)
}

// Placed implements [Data].
func (d *localData) Placed(dest Destination) bool {
	r, err := os.OpenRoot(dest.Root)
	if err != nil {
		return false
	}
	defer r.Close()
	return d.placedIn(r, dest.Path)
}

// placedIn reports whether rel inside r is the session's data file, or the
// staged upload the record names.
func (d *localData) placedIn(r *os.Root, rel string) bool {
	dfi, err := r.Lstat(rel)
	if err != nil || !dfi.Mode().IsRegular() {
		return false
	}
	if d.rec.Ino != 0 {
		dev, ino := fileID(dfi)
		return dev == d.rec.Dev && ino == d.rec.Ino
	}
	sfi, err := os.Stat(d.path)
	return err == nil && os.SameFile(dfi, sfi)
}

// Remove implements [Data].
func (d *localData) Remove() error {
	if err := os.Remove(d.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting data file: %w", err)
	}
	d.size.Store(0)
	return nil
}

// checkDestination checks that rel can become a file inside r: it must
// not be a directory, must not exist unless overwrite is set, and no
// existing parent may be something other than a directory.
func checkDestination(r statter, rel string, overwrite bool) error {
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

// mkdirAllSynced creates dir and its missing parents inside r, from the
// top down, and fsyncs the parent of each directory it creates, so that a
// placed upload does not vanish with its directory after a power loss.
// The deepest directory itself is fsynced when the upload is linked into
// it.
func mkdirAllSynced(r *os.Root, dir string, fsync func(*os.File) error) error {
	if dir == "." {
		return nil
	}
	if fi, err := r.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := "."
	for _, name := range splitPath(dir) {
		next := path.Join(parent, name)
		err := r.Mkdir(next, 0o755)
		switch {
		case err == nil:
			if err := syncIn(r, parent, fsync); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
		default:
			return destinationError(fmt.Errorf("creating destination directory %s: %w", next, err))
		}
		parent = next
	}
	return nil
}

// splitPath splits a clean relative slash-separated path into its names.
func splitPath(p string) []string {
	var names []string
	for p != "." && p != "" {
		names = append(names, path.Base(p))
		p = path.Dir(p)
	}
	for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
		names[i], names[j] = names[j], names[i]
	}
	return names
}

// syncIn fsyncs the directory dir inside r.
func syncIn(r *os.Root, dir string, fsync func(*os.File) error) error {
	f, err := r.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory %s: %w", dir, err)
	}
	err = fsync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// Interface guards
var (
	_ Storage    = (*LocalStorage)(nil)
	_ Data       = (*localData)(nil)
	_ DataFile   = (*localData)(nil)
	_ DataReader = (*localData)(nil)
)
