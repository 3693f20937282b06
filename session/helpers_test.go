package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// fakeClock is a manually advanced clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// Whole seconds, close to the real time: tombstones are stored in Unix
	// seconds, and recovery compares against real file modification times.
	return &fakeClock{t: time.Now().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openStore opens a store in dir (a new temporary directory if empty) and
// closes it when the test ends.
func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// create makes a session with its destination at root/rel (root a new
// temporary directory if empty) that computes its digest while written.
func create(t testing.TB, st *Store, root, rel string) *Session {
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	sess, err := st.Create(CreateInfo{Root: root, Path: rel, URL: "https://example.com/up/" + rel, User: "alice", Client: "192.0.2.1:1234", Digest: true})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return sess
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fill returns n copies of c.
func fill(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return sum(b)
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Size()
}

func mustExist(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("%s should exist: %v", path, err)
	}
}

func mustNotExist(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s should not exist (lstat err = %v)", path, err)
	}
}

// rng builds a range of an upload of length total.
func rng(first, last, total int64) protocol.Range {
	return protocol.Range{First: first, Last: last, Total: total}
}

// write sends content[first:last+1] as a fragment of an upload of
// len(content) bytes, holding the session's lock.
func write(t testing.TB, sess *Session, content []byte, first, last int64) (WriteResult, error) {
	t.Helper()
	return writeBody(t, sess, rng(first, last, int64(len(content))), bytes.NewReader(content[first:last+1]))
}

func writeBody(t testing.TB, sess *Session, r protocol.Range, body io.Reader) (WriteResult, error) {
	t.Helper()
	if err := sess.Lock(context.Background()); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	defer sess.Unlock()
	return sess.Write(r, body)
}

// mustWrite is write that fails the test on error.
func mustWrite(t testing.TB, sess *Session, content []byte, first, last int64) WriteResult {
	t.Helper()
	res, err := write(t, sess, content, first, last)
	if err != nil {
		t.Fatalf("Write %d-%d/%d: %v", first, last, len(content), err)
	}
	return res
}

// upload sends all of content in fragments of size frag.
func upload(t testing.TB, sess *Session, content []byte, frag int) {
	t.Helper()
	if len(content) == 0 {
		if _, err := writeBody(t, sess, rng(0, -1, 0), bytes.NewReader(nil)); err != nil {
			t.Fatalf("Write empty: %v", err)
		}
		return
	}
	for off := 0; off < len(content); off += frag {
		end := min(off+frag, len(content))
		mustWrite(t, sess, content, int64(off), int64(end-1))
	}
	if st := sess.State(); !st.Complete() {
		t.Fatalf("upload not complete: %+v", st)
	}
}

// unreadable fails the test if the body is read at all.
type unreadable struct{ t testing.TB }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Errorf("body was read, but the fragment should have been discarded unread")
	return 0, errors.New("must not be read")
}

// errAfter yields b and then fails with err.
func errAfter(b []byte, err error) io.Reader {
	return io.MultiReader(bytes.NewReader(b), &errReader{err})
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// readState reads a session's state.json directly.
func diskState(t testing.TB, sess *Session) *State {
	t.Helper()
	return diskStateAt(t, filepath.Join(sess.dir, stateFile))
}

func diskStateAt(t testing.TB, path string) *State {
	t.Helper()
	st, err := readState(path)
	if err != nil {
		t.Fatalf("readState: %v", err)
	}
	return st
}

// editState rewrites fields of a state.json on disk as raw JSON, so that
// tests can corrupt what the code under test would never write.
func editState(t testing.TB, path string, edit func(m map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies a directory tree (regular files, directories and
// symbolic links), preserving file sizes and modes. Copying a store's
// directory while the store is open is a faithful model of a process
// crash: the page cache, and so every byte written, survives; nothing that
// a clean shutdown would do has happened.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}

// entries returns the names in dir.
func entries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// mountTmpfs mounts a tmpfs of the given size on a new directory and
// unmounts it when the test ends. It skips the test where that is not
// possible (not root, no mount permission).
func mountTmpfs(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("no mount command")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	// Registered after TempDir, so it runs before TempDir's removal.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}
