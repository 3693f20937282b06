package session

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

// completed returns a complete session of content with destination
// root/rel.
func completed(t *testing.T, store *Store, root, rel string, content []byte) *Session {
	t.Helper()
	sess := create(t, store, root, rel)
	upload(t, sess, content, 1000)
	return sess
}

// commit settles a complete upload without a notification: it places the
// upload at its destination and finishes the session.
func commit(t *testing.T, sess *Session, overwrite bool) error {
	t.Helper()
	_, err := settle(t, sess, SettleOptions{Overwrite: overwrite})
	return err
}

// checkDest runs the local storage's CheckDestination.
func checkDest(t *testing.T, root, rel string, overwrite bool) error {
	t.Helper()
	return NewLocalStorage(t.TempDir()).CheckDestination(t.Context(), Destination{Root: root, Path: rel}, overwrite)
}

// noTemp fails the test if a commit temporary file is left in dir.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range es {
		if strings.Contains(e.Name(), ".bits-tmp") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

// TestCommitDestinations runs Settle (placing the upload) and
// CheckDestination over the destination cases. Each setup gets the root and a directory outside it.
func TestCommitDestinations(t *testing.T) {
	existing := []byte("existing destination content")
	outsideContent := []byte("outside file content")
	tests := []struct {
		name      string
		setup     func(t *testing.T, root, outside string)
		rel       string
		overwrite bool
		wantErr   error  // nil: success
		anyErr    bool   // any error will do (wantErr nil)
		wantAt    string // where the upload must appear (relative to root), default rel
		unchanged string // file (relative to root) whose content must stay `existing`
	}{
		{name: "new file", rel: "f.bin"},
		{name: "new file, overwrite", rel: "f.bin", overwrite: true},
		{name: "missing parents are created", rel: "a/b/c/f.bin"},
		{
			name: "existing parent", rel: "a/f.bin",
			setup: func(t *testing.T, root, _ string) { mkdir(t, filepath.Join(root, "a")) },
		},
		{
			name: "exists, no overwrite", rel: "f.bin", wantErr: ErrDestinationExists, unchanged: "f.bin",
			setup: func(t *testing.T, root, _ string) { writeFile(t, filepath.Join(root, "f.bin"), existing) },
		},
		{
			name: "exists, overwrite", rel: "a/f.bin", overwrite: true,
			setup: func(t *testing.T, root, _ string) { writeFile(t, filepath.Join(root, "a", "f.bin"), existing) },
		},
		{
			name: "destination is a directory", rel: "d", wantErr: ErrDestinationIsDir,
			setup: func(t *testing.T, root, _ string) { mkdir(t, filepath.Join(root, "d")) },
		},
		{
			name: "destination is a directory, overwrite", rel: "d", overwrite: true, wantErr: ErrDestinationIsDir,
			setup: func(t *testing.T, root, _ string) { mkdir(t, filepath.Join(root, "d")) },
		},
		{
			name: "parent is a regular file", rel: "file/f.bin", wantErr: ErrInvalidDestination, unchanged: "file",
			setup: func(t *testing.T, root, _ string) { writeFile(t, filepath.Join(root, "file"), existing) },
		},
		{
			name: "grandparent is a regular file", rel: "file/sub/f.bin", overwrite: true, wantErr: ErrInvalidDestination, unchanged: "file",
			setup: func(t *testing.T, root, _ string) { writeFile(t, filepath.Join(root, "file"), existing) },
		},
		{
			name: "symlinked parent leads outside the root", rel: "evil/f.bin", wantErr: ErrInvalidDestination,
			setup: func(t *testing.T, root, outside string) { symlink(t, outside, filepath.Join(root, "evil")) },
		},
		{
			name: "symlinked parent leads outside, overwrite", rel: "evil/f.bin", overwrite: true, wantErr: ErrInvalidDestination,
			setup: func(t *testing.T, root, outside string) { symlink(t, outside, filepath.Join(root, "evil")) },
		},
		{
			name: "symlinked grandparent leads outside, missing parent", rel: "evil/sub/f.bin", wantErr: ErrInvalidDestination,
			setup: func(t *testing.T, root, outside string) { symlink(t, outside, filepath.Join(root, "evil")) },
		},
		{
			name: "dangling symlink leads outside", rel: "evil/sub/f.bin", wantErr: ErrInvalidDestination,
			setup: func(t *testing.T, root, outside string) {
				symlink(t, filepath.Join(outside, "missing"), filepath.Join(root, "evil"))
			},
		},
		{
			name: "relative symlink climbs out", rel: "evil/f.bin", wantErr: ErrInvalidDestination,
			setup: func(t *testing.T, root, outside string) {
				rel, err := filepath.Rel(root, outside)
				if err != nil {
					t.Fatal(err)
				}
				symlink(t, rel, filepath.Join(root, "evil"))
			},
		},
		{
			name: "destination is a symlink to a file outside", rel: "link.bin", overwrite: true, wantErr: ErrInvalidDestination,
			setup: func(t *testing.T, root, outside string) {
				writeFile(t, filepath.Join(outside, "target"), outsideContent)
				symlink(t, filepath.Join(outside, "target"), filepath.Join(root, "link.bin"))
			},
		},
		{
			name: "destination is a symlink to a file outside, no overwrite", rel: "link.bin", anyErr: true,
			setup: func(t *testing.T, root, outside string) {
				writeFile(t, filepath.Join(outside, "target"), outsideContent)
				symlink(t, filepath.Join(outside, "target"), filepath.Join(root, "link.bin"))
			},
		},
		{
			name: "symlink inside the root is followed", rel: "inner/f.bin", wantAt: "real/f.bin",
			setup: func(t *testing.T, root, _ string) {
				mkdir(t, filepath.Join(root, "real"))
				symlink(t, "real", filepath.Join(root, "inner"))
			},
		},
		{
			name: "destination is a symlink to a file inside, no overwrite", rel: "link.bin", wantErr: ErrDestinationExists, unchanged: "target",
			setup: func(t *testing.T, root, _ string) {
				writeFile(t, filepath.Join(root, "target"), existing)
				symlink(t, "target", filepath.Join(root, "link.bin"))
			},
		},
		{
			name: "destination is a fifo, overwrite", rel: "fifo", overwrite: true, wantErr: ErrInvalidDestination,
			setup: func(t *testing.T, root, _ string) {
				if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
			},
		},
	}
	content := randBytes(10, 5000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			outside := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, root, outside)
			}
			outsideBefore := entries(t, outside)

			checkErr := checkDest(t, root, tt.rel, tt.overwrite)
			store := openStore(t, "", Options{})
			if err := store.Storage().CheckDestination(t.Context(), Destination{Root: root, Path: tt.rel}, tt.overwrite); (err == nil) != (checkErr == nil) {
				t.Errorf("the store's CheckDestination = %v, the local storage's = %v", err, checkErr)
			}
			sess := completed(t, store, root, tt.rel, content)
			err := commit(t, sess, tt.overwrite)

			for _, c := range []struct {
				what string
				err  error
			}{{"CheckDestination", checkErr}, {"Commit", err}} {
				switch {
				case tt.wantErr != nil:
					if !errors.Is(c.err, tt.wantErr) {
						t.Errorf("%s = %v, want %v", c.what, c.err, tt.wantErr)
					}
				case tt.anyErr:
					if c.err == nil {
						t.Errorf("%s succeeded, want an error", c.what)
					}
				default:
					if c.err != nil {
						t.Errorf("%s = %v, want success", c.what, c.err)
					}
				}
			}

			// Nothing may ever be created outside the root.
			if got := entries(t, outside); strings.Join(got, ",") != strings.Join(outsideBefore, ",") {
				t.Errorf("outside the root: %v, before the commit: %v", got, outsideBefore)
			}
			if tp := filepath.Join(outside, "target"); fileExists(tp) && fileSum(t, tp) != sum(outsideContent) {
				t.Errorf("file outside the root was modified")
			}
			if tt.unchanged != "" {
				if got := fileSum(t, filepath.Join(root, tt.unchanged)); got != sum(existing) {
					t.Errorf("%s was modified by a failed commit", tt.unchanged)
				}
			}
			st := sess.State()
			if err != nil {
				if st.Committed {
					t.Errorf("Committed set after a failed commit")
				}
				if d := diskState(t, sess); d.Committed {
					t.Errorf("state file committed after a failed commit")
				}
				if _, ok := sess.Finished(); ok {
					t.Errorf("session finished after a failed commit")
				}
				mustExist(t, dataPath(sess))
				return
			}
			at := tt.wantAt
			if at == "" {
				at = tt.rel
			}
			dest := filepath.Join(root, filepath.FromSlash(at))
			if got := fileSum(t, dest); got != sum(content) {
				t.Errorf("destination SHA-256 %s, want %s", got, sum(content))
			}
			// Settle finishes the session in memory; until the state is
			// next written, recovery recognises the placed upload by its
			// link.
			if !st.Committed {
				t.Errorf("Committed not set")
			}
			if info, ok := sess.Finished(); !ok || !info.Commit {
				t.Errorf("Finished = %+v, %v; want finished with Commit", info, ok)
			}
			noTemp(t, filepath.Dir(dest))
			// The session keeps its data until it is closed.
			if got := fileSum(t, dataPath(sess)); got != sum(content) {
				t.Errorf("session data changed by the commit")
			}
		})
	}
}

func TestCheckDestinationOnly(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "file"), []byte("x"))
	tests := []struct {
		rel       string
		overwrite bool
		want      error
		wantOK    bool
	}{
		{rel: "../escape.bin", want: ErrInvalidDestination},
		{rel: "a/../../escape.bin", want: ErrInvalidDestination},
		{rel: "new.bin", wantOK: true},
		{rel: "file", want: ErrDestinationExists},
		{rel: "file", overwrite: true, wantOK: true},
		{rel: "file/x", want: ErrInvalidDestination},
		{rel: ".", want: ErrDestinationIsDir},
	}
	for _, tt := range tests {
		err := checkDest(t, root, tt.rel, tt.overwrite)
		if tt.wantOK {
			if err != nil {
				t.Errorf("CheckDestination(%q, %v) = %v, want nil", tt.rel, tt.overwrite, err)
			}
		} else if !errors.Is(err, tt.want) {
			t.Errorf("CheckDestination(%q, %v) = %v, want %v", tt.rel, tt.overwrite, err, tt.want)
		}
	}
	if err := checkDest(t, filepath.Join(root, "missing-root"), "f.bin", false); err == nil {
		t.Error("CheckDestination with a missing root succeeded")
	}
	mustNotExist(t, filepath.Join(filepath.Dir(root), "escape.bin"))
}

func TestCommitLifecycle(t *testing.T) {
	content := randBytes(11, 12345)
	root := t.TempDir()
	store := openStore(t, "", Options{})

	t.Run("before any fragment", func(t *testing.T) {
		sess := create(t, store, root, "none.bin")
		if err := commit(t, sess, false); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("Commit = %v, want ErrIncomplete", err)
		}
		mustNotExist(t, filepath.Join(root, "none.bin"))
	})
	t.Run("incomplete", func(t *testing.T) {
		sess := create(t, store, root, "part.bin")
		mustWrite(t, sess, content, 0, 999)
		if err := commit(t, sess, true); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("Commit = %v, want ErrIncomplete", err)
		}
		mustNotExist(t, filepath.Join(root, "part.bin"))
		if sess.State().Committed {
			t.Fatal("Committed set")
		}
	})
	t.Run("idempotent and survives Remove", func(t *testing.T) {
		sess := completed(t, store, root, "sub/done.bin", content)
		dest := filepath.Join(root, "sub", "done.bin")
		for i, ow := range []bool{false, false, true} {
			res, err := settle(t, sess, SettleOptions{Overwrite: ow})
			if err != nil {
				t.Fatalf("Commit #%d: %v", i, err)
			}
			if res.Cached != (i > 0) || res.Placed != (i == 0) {
				t.Fatalf("Commit #%d: %+v; want only the first to place and the others answered from the cache", i, res)
			}
			if got := fileSum(t, dest); got != sum(content) {
				t.Fatalf("after Commit #%d: destination SHA-256 %s, want %s", i, got, sum(content))
			}
		}
		if _, err := store.Remove(t.Context(), sess.ID(), RemovedClosed); err != nil {
			t.Fatal(err)
		}
		mustHaveNoFiles(t, store.Dir(), sess.ID())
		if got := fileSum(t, dest); got != sum(content) {
			t.Fatalf("destination after Remove: SHA-256 %s, want %s", got, sum(content))
		}
		noTemp(t, filepath.Dir(dest))
	})
	t.Run("empty upload", func(t *testing.T) {
		sess := completed(t, store, root, "empty.bin", nil)
		if err := commit(t, sess, false); err != nil {
			t.Fatal(err)
		}
		if size := fileSize(t, filepath.Join(root, "empty.bin")); size != 0 {
			t.Fatalf("destination has %d bytes", size)
		}
	})
	t.Run("two sessions race for one destination", func(t *testing.T) {
		a := completed(t, store, root, "race.bin", content)
		other := randBytes(12, 777)
		b := completed(t, store, root, "race.bin", other)
		if err := commit(t, a, false); err != nil {
			t.Fatal(err)
		}
		if err := commit(t, b, false); !errors.Is(err, ErrDestinationExists) {
			t.Fatalf("second Commit without overwrite = %v, want ErrDestinationExists", err)
		}
		if got := fileSum(t, filepath.Join(root, "race.bin")); got != sum(content) {
			t.Fatal("losing commit changed the destination")
		}
		if err := commit(t, b, true); err != nil {
			t.Fatal(err)
		}
		if got := fileSum(t, filepath.Join(root, "race.bin")); got != sum(other) {
			t.Fatal("overwriting commit did not replace the destination")
		}
		// The first session's data is unaffected by the replacement.
		if got := fileSum(t, dataPath(a)); got != sum(content) {
			t.Fatal("first session's data changed")
		}
	})
}

// TestCommitAfterCrashBeforeStateUpdate: the upload was linked into place,
// but the process died before recording the commit. Recovery recognises
// the placed upload, and placing it again without overwrite recognises
// its own file rather than fail.
func TestCommitAfterCrashBeforeStateUpdate(t *testing.T) {
	content := randBytes(13, 4000)
	root := t.TempDir()
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	sess := completed(t, store, root, "f.bin", content)
	if err := commit(t, sess, false); err != nil {
		t.Fatal(err)
	}
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// The state as it was before the upload was placed.
	editState(t, storeKey(t, dir), statePathIn(dir, id), func(m map[string]any) {
		delete(m, "committed")
		delete(m, "finished")
		delete(m, "final")
	})

	store = openStore(t, dir, Options{})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	// The data file is the destination itself: recovery knows it was
	// committed, whatever the state file says.
	if !sess.State().Committed {
		t.Fatal("recovery did not recognise the linked data file as committed")
	}
	locked(t, sess, func(l *Lease) {
		if err := l.s.place(t.Context(), false); err != nil {
			t.Fatalf("placing again after the crash = %v, want success", err)
		}
	})
	if err := commit(t, sess, false); err != nil {
		t.Fatalf("Commit after the crash = %v, want success", err)
	}
	if !sess.State().Committed {
		t.Fatal("Committed not set")
	}
	if got := fileSum(t, filepath.Join(root, "f.bin")); got != sum(content) {
		t.Fatal("destination changed")
	}

	// An unrelated existing file is still refused.
	other := completed(t, store, root, "f.bin", randBytes(14, 10))
	if err := commit(t, other, false); !errors.Is(err, ErrDestinationExists) {
		t.Fatalf("Commit onto another session's file = %v, want ErrDestinationExists", err)
	}
}

// TestCommitCrossFilesystem puts the upload root on a tmpfs and the store
// on the normal disk, so the hard link fails with EXDEV and Commit must
// copy.
func TestCommitCrossFilesystem(t *testing.T) {
	root := testutil.MountTmpfs(t, "8m")
	store := openStore(t, "", Options{})
	content := randBytes(15, 700<<10)

	sess := completed(t, store, root, "a/b/f.bin", content)
	if err := commit(t, sess, false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	dest := filepath.Join(root, "a", "b", "f.bin")
	if got := fileSum(t, dest); got != sum(content) {
		t.Fatalf("destination SHA-256 %s, want %s", got, sum(content))
	}
	dfi, _ := os.Stat(dest)
	sfi, _ := os.Stat(dataPath(sess))
	if os.SameFile(dfi, sfi) {
		t.Fatal("destination is the data file itself across file systems?")
	}
	noTemp(t, filepath.Dir(dest))
	if err := commit(t, sess, false); err != nil {
		t.Fatalf("repeated Commit: %v", err)
	}

	// Without overwrite, an existing destination is refused and no
	// temporary file is left.
	other := randBytes(16, 300<<10)
	s2 := completed(t, store, root, "a/b/f.bin", other)
	if err := commit(t, s2, false); !errors.Is(err, ErrDestinationExists) {
		t.Fatalf("Commit onto an existing file = %v, want ErrDestinationExists", err)
	}
	if got := fileSum(t, dest); got != sum(content) {
		t.Fatal("refused commit changed the destination")
	}
	noTemp(t, filepath.Dir(dest))

	// With overwrite it is replaced.
	if err := commit(t, s2, true); err != nil {
		t.Fatalf("Commit with overwrite: %v", err)
	}
	if got := fileSum(t, dest); got != sum(other) {
		t.Fatalf("destination SHA-256 %s, want %s", got, sum(other))
	}
	noTemp(t, filepath.Dir(dest))
	if es := entries(t, filepath.Dir(dest)); len(es) != 1 {
		t.Fatalf("destination directory holds %v, want only f.bin", es)
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	mkdir(t, filepath.Dir(p))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestCommitOverwriteAfterCrashBeforeStateUpdate is the overwrite variant
// of TestCommitAfterCrashBeforeStateUpdate: the destination already is a
// hard link of the session's data file when the upload is placed again
// with overwrite. Placing must succeed and leave no temporary file next
// to the destination.
func TestCommitOverwriteAfterCrashBeforeStateUpdate(t *testing.T) {
	content := randBytes(17, 4000)
	root := t.TempDir()
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	sess := completed(t, store, root, "f.bin", content)
	if err := commit(t, sess, true); err != nil {
		t.Fatal(err)
	}
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	editState(t, storeKey(t, dir), statePathIn(dir, id), func(m map[string]any) {
		delete(m, "committed")
		delete(m, "finished")
		delete(m, "final")
	})
	store = openStore(t, dir, Options{})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	locked(t, sess, func(l *Lease) {
		if err := l.s.place(t.Context(), true); err != nil {
			t.Fatalf("placing again with overwrite after the crash: %v", err)
		}
	})
	if err := commit(t, sess, true); err != nil {
		t.Fatalf("Commit(true) after the crash: %v", err)
	}
	if got := fileSum(t, filepath.Join(root, "f.bin")); got != sum(content) {
		t.Fatal("destination changed")
	}
	if es := entries(t, root); len(es) != 1 {
		t.Fatalf("Commit(true) onto a destination that is already a hard link of the data file "+
			"leaves the temporary link behind (rename(2) between two links of one inode is a no-op): root holds %v", es)
	}
}
