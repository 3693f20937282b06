package session

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// syncCall is one fsync the store asked for.
type syncCall struct {
	name string      // the name the file was opened by
	fi   os.FileInfo // what it was, to tell files opened by relative names apart
	// tmpExisted is whether a file of the name existed when it was synced;
	// for a temporary file, that it was not renamed yet.
	tmpExisted bool
}

// syncRecorder is an Options.fsync that records every call and syncs.
type syncRecorder struct {
	mu    sync.Mutex
	calls []syncCall
}

func (r *syncRecorder) fsync(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	_, serr := os.Lstat(f.Name())
	r.mu.Lock()
	r.calls = append(r.calls, syncCall{name: f.Name(), fi: fi, tmpExisted: serr == nil})
	r.mu.Unlock()
	return f.Sync()
}

func (r *syncRecorder) get() []syncCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]syncCall(nil), r.calls...)
}

func (r *syncRecorder) reset() {
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
}

// named returns the base names of the files synced, in order.
func (r *syncRecorder) named() []string {
	var names []string
	for _, c := range r.get() {
		names = append(names, filepath.Base(c.name))
	}
	return names
}

// among returns, in order, which of the labelled paths the synced files
// were (by identity, not name); files that are none of them are left out.
func (r *syncRecorder) among(t *testing.T, paths map[string]string) []string {
	t.Helper()
	stats := make(map[string]os.FileInfo)
	for label, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		stats[label] = fi
	}
	var out []string
	for _, c := range r.get() {
		for label, fi := range stats {
			if os.SameFile(c.fi, fi) {
				out = append(out, label)
			}
		}
	}
	return out
}

// TestMkdirAllSyncedTopDown: each directory created for a destination is
// made durable by an fsync of its parent, from the top down; existing
// directories cost nothing.
func TestMkdirAllSyncedTopDown(t *testing.T) {
	root := t.TempDir()
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dirs := func() map[string]string {
		m := map[string]string{"root": root}
		for _, d := range []string{"a", "a/b", "a/b/c", "a/x", "a/x/y"} {
			if fileExists(filepath.Join(root, d)) {
				m[d] = filepath.Join(root, d)
			}
		}
		return m
	}
	var rec syncRecorder
	if err := mkdirAllSynced(r, "a/b/c", rec.fsync); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.among(t, dirs()), []string{"root", "a", "a/b"}; !slices.Equal(got, want) {
		t.Errorf("creating a/b/c synced %v, want %v", got, want)
	}
	rec.reset()
	if err := mkdirAllSynced(r, "a/x/y", rec.fsync); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.among(t, dirs()), []string{"a", "a/x"}; !slices.Equal(got, want) {
		t.Errorf("creating a/x/y under an existing a synced %v, want %v", got, want)
	}
	rec.reset()
	if err := mkdirAllSynced(r, "a/b/c", rec.fsync); err != nil {
		t.Fatal(err)
	}
	if calls := rec.get(); len(calls) != 0 {
		t.Errorf("existing directories cost %d fsyncs", len(calls))
	}
}

// TestPlaceSyncsTopDown: placing an upload at a/b/c/f.bin, where a does
// not exist, syncs the root, a and a/b (each holding a directory just
// created) in that order, then makes the upload durable: where an fsync of
// the file commits its new name too, its bytes are written back before
// the link and the file is fsynced once after it; elsewhere the file is
// fsynced before the link and a/b/c (holding it) after. Linked from the
// session and placed straight alike.
func TestPlaceSyncsTopDown(t *testing.T) {
	for _, oneSync := range []bool{false, true} {
		for _, straight := range []bool{false, true} {
			name := fmt.Sprintf("linked/one sync %v", oneSync)
			if straight {
				name = fmt.Sprintf("straight/one sync %v", oneSync)
			}
			t.Run(name, func(t *testing.T) {
				var rec, wb syncRecorder
				root := t.TempDir()
				store := openStore(t, "", Options{
					fsync:         rec.fsync,
					writeBack:     wb.fsync,
					syncsNewNames: func(*os.File) bool { return oneSync },
				})
				content := randBytes(96, 3000)
				sess := create(t, store, root, "a/b/c/f.bin")
				if straight {
					if _, err := placeWriteOpts(t, sess, content, WriteOptions{Place: true}); err != nil {
						t.Fatal(err)
					}
				} else {
					upload(t, sess, content, 1000)
					rec.reset()
					if err := commit(t, sess, false); err != nil {
						t.Fatal(err)
					}
				}
				dest := filepath.Join(root, "a", "b", "c", "f.bin")
				if !bytes.Equal(mustRead(t, dest), content) {
					t.Fatal("destination differs from the upload")
				}
				names := map[string]string{
					"upload": dest, "root": root,
					"a": filepath.Join(root, "a"), "a/b": filepath.Join(root, "a", "b"), "a/b/c": filepath.Join(root, "a", "b", "c"),
				}
				got, wrote := rec.among(t, names), wb.among(t, names)
				want, wantWrote := []string{"root", "a", "a/b", "upload", "a/b/c"}, []string(nil)
				if oneSync {
					want, wantWrote = []string{"root", "a", "a/b", "upload"}, []string{"upload"}
				}
				if !slices.Equal(got, want) || !slices.Equal(wrote, wantWrote) {
					t.Errorf("fsyncs %v and write-backs %v, want %v and %v", got, wrote, want, wantWrote)
				}
			})
		}
	}
}

// mustRead returns the content of a file, failing the test if it cannot
// be read.
func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPersistSyncsOnceDurable: a state file is first written without
// fsync; once it was written durably, every later write fsyncs the new
// file before renaming it over the old one (so a power loss cannot leave
// an older or empty state), but only a durable write syncs the directory.
// A state file found at Open counts as durable.
func TestPersistSyncsOnceDurable(t *testing.T) {
	var rec syncRecorder
	dir := t.TempDir()
	store := openStore(t, dir, Options{fsync: rec.fsync})
	sess := create(t, store, "", "f.bin")
	mustWrite(t, sess, randBytes(97, 100), 0, 9)
	mustExist(t, statePath(sess))
	state := filepath.Base(statePath(sess))
	tmp := state + ".tmp"

	check := func(what string, durable bool, want []string) {
		t.Helper()
		rec.reset()
		locked(t, sess, func(l *Lease) {
			if err := l.s.persist(durable); err != nil {
				t.Fatal(err)
			}
		})
		if got := rec.named(); !slices.Equal(got, want) {
			t.Errorf("%s: fsyncs %v, want %v", what, got, want)
		}
		for _, c := range rec.get() {
			if filepath.Base(c.name) == tmp && !c.tmpExisted {
				t.Errorf("%s: the temporary state file was synced after it was renamed", what)
			}
		}
	}
	check("before any durable write, persist(false)", false, nil)
	check("persist(true)", true, []string{tmp, activeName})
	check("after a durable write, persist(false)", false, []string{tmp})
	check("after a durable write, persist(false) again", false, []string{tmp})

	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{fsync: rec.fsync})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	check("after Open, persist(false)", false, []string{tmp})
	if got := rec.named(); slices.ContainsFunc(got, func(n string) bool { return strings.HasSuffix(n, ".data") }) {
		t.Errorf("persisting the state synced the data: %v", got)
	}
}
