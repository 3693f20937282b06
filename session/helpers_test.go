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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// newFakeClock returns a clock for Options.Now that only the test moves.
func newFakeClock() *testutil.Clock {
	// Whole seconds, close to the real time: tombstones are stored in Unix
	// seconds, and recovery compares against real file modification times.
	return testutil.NewClock(time.Now().Truncate(time.Second))
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

// randBytes returns n reproducible pseudo-random bytes for seed.
func randBytes(seed uint64, n int) []byte { return testutil.RandomBytes(seed, n) }

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
// len(content) bytes, holding a lease on the session.
func write(t testing.TB, sess *Session, content []byte, first, last int64) (WriteResult, error) {
	t.Helper()
	return writeBody(t, sess, rng(first, last, int64(len(content))), bytes.NewReader(content[first:last+1]))
}

// writeBody writes one fragment under a lease, keeping the bytes in the
// session (as for an upload with a notification).
func writeBody(t testing.TB, sess *Session, r protocol.Range, body io.Reader) (WriteResult, error) {
	t.Helper()
	return writeOpts(t, sess, r, body, WriteOptions{})
}

// writeOpts writes one fragment under a lease with the given options.
func writeOpts(t testing.TB, sess *Session, r protocol.Range, body io.Reader, opts WriteOptions) (WriteResult, error) {
	t.Helper()
	l := lease(t, sess)
	defer l.Release()
	return l.Write(r, body, opts)
}

// lease acquires a lease on the session, failing the test if it cannot.
// The caller releases it.
func lease(t testing.TB, sess *Session) *Lease {
	t.Helper()
	l, err := sess.store.Acquire(t.Context(), sess.ID(), nil)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", sess.ID(), err)
	}
	return l
}

// locked runs f with a lease on the session.
func locked(t testing.TB, sess *Session, f func(l *Lease)) {
	t.Helper()
	l := lease(t, sess)
	defer l.Release()
	f(l)
}

// settle settles a complete upload under a lease.
func settle(t testing.TB, sess *Session, opts SettleOptions) (Settlement, error) {
	t.Helper()
	l := lease(t, sess)
	defer l.Release()
	return l.Settle(t.Context(), opts)
}

// notifyWith returns a Notify function that answers info and counts its
// calls in n.
func notifyWith(info FinalInfo, n *int) func(context.Context, *Delivery) (FinalInfo, error) {
	return func(context.Context, *Delivery) (FinalInfo, error) {
		*n++
		return info, nil
	}
}

// waitCheckpoint waits, under a lease, for the checkpoint the session may
// be taking in the background, so that the state on disk can be read.
func waitCheckpoint(t testing.TB, sess *Session) {
	t.Helper()
	locked(t, sess, func(l *Lease) { l.s.waitCheckpoint() })
}

// dataPath returns the path of a session's data file.
func dataPath(sess *Session) string {
	return filepath.Join(sess.store.activeDir, sess.ID().Bare()+dataSuffix)
}

// statePath returns the path of a session's state file.
func statePath(sess *Session) string { return sess.statePath() }

// statePathIn returns the path of the state file of session id in the
// store directory dir.
func statePathIn(dir string, id protocol.SessionID) string {
	return filepath.Join(dir, activeName, id.Bare()+stateSuffix)
}

// sessionFiles returns the names in the active directory of the store in
// dir that belong to session id.
func sessionFiles(t testing.TB, dir string, id protocol.SessionID) []string {
	t.Helper()
	var names []string
	for _, name := range entries(t, filepath.Join(dir, activeName)) {
		if strings.HasPrefix(name, id.Bare()) {
			names = append(names, name)
		}
	}
	return names
}

// mustHaveNoFiles fails the test if any file of session id is left in
// the active directory of the store in dir.
func mustHaveNoFiles(t testing.TB, dir string, id protocol.SessionID) {
	t.Helper()
	if names := sessionFiles(t, dir, id); len(names) != 0 {
		t.Fatalf("files of session %s left: %v", id, names)
	}
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

// diskState reads a session's state file, checking its seal.
func diskState(t testing.TB, sess *Session) *State {
	t.Helper()
	return diskStateAt(t, sess.store.key, statePath(sess))
}

// diskStateAt reads the state file at path, checking its seal with key.
func diskStateAt(t testing.TB, key []byte, path string) *State {
	t.Helper()
	st, err := readStateFile(key, path)
	if err != nil {
		t.Fatalf("readStateFile: %v", err)
	}
	return st
}

// storeKey reads the key of the store in dir.
func storeKey(t testing.TB, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, keyName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// diskJournal loads the journal of the store in dir as the next Open
// would, without changing it.
func diskJournal(t testing.TB, dir string) *journal {
	t.Helper()
	j := &journal{
		max:     1 << 30,
		tombs:   make(map[protocol.SessionID]time.Time),
		states:  make(map[protocol.SessionID][]byte),
		records: make(map[protocol.SessionID]string),
	}
	if err := j.load(filepath.Join(dir, journalFile), time.Time{}); err != nil {
		t.Fatal(err)
	}
	return j
}

// journalState returns the state of session id that the journal of the
// store in dir holds, with its storage record applied as recovery applies
// it, checking their seals, or nil if it holds none.
func journalState(t testing.TB, dir string, key []byte, id protocol.SessionID) *State {
	t.Helper()
	j := diskJournal(t, dir)
	b, ok := j.states[id]
	if !ok {
		return nil
	}
	st, err := unseal(key, b)
	if err != nil {
		t.Fatalf("journal state of %s: %v", id, err)
	}
	if line, ok := j.records[id]; ok {
		total, rec, err := unsealRecord(key, id, line)
		if err != nil {
			t.Fatalf("journal record of %s: %v", id, err)
		}
		st.Data = rec
		if st.Total < 0 {
			st.Total = total
		}
	}
	return st
}

// savedState returns the state of a session as a restart would find it:
// its state file, or else its state in the journal, or nil for a session
// kept in memory only (one a restart revives from its id).
func savedState(t testing.TB, sess *Session) *State {
	t.Helper()
	if fileExists(statePath(sess)) {
		return diskState(t, sess)
	}
	return journalState(t, sess.store.dir, sess.store.key, sess.ID())
}

// journalLines returns the lines of the journal of the store in dir.
func journalLines(t testing.TB, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// sealRaw seals raw state JSON as the store does, without looking at it,
// so that tests can seal what the store would never write.
func sealRaw(t testing.TB, key, raw []byte) []byte {
	t.Helper()
	b, err := json.Marshal(envelope{MAC: mac(key, raw), State: raw})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editSealed decodes a sealed state, applies edit to its fields as raw
// JSON and seals the result again with key.
func editSealed(t testing.TB, key, sealed []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var env envelope
	if err := json.Unmarshal(sealed, &env); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(env.State, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return sealRaw(t, key, raw)
}

// editState rewrites fields of a state file on disk as raw JSON and seals
// it again with key, so that tests can make the store find what it would
// never write.
func editState(t testing.TB, key []byte, path string, edit func(m map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, editSealed(t, key, b, edit), 0o600); err != nil {
		t.Fatal(err)
	}
}

// editJournalState rewrites every S line of session id in the journal of
// the store in dir like editState.
func editJournalState(t testing.TB, dir string, id protocol.SessionID, edit func(m map[string]any)) {
	t.Helper()
	key := storeKey(t, dir)
	lines := journalLines(t, dir)
	n := 0
	for i, line := range lines {
		rest, ok := strings.CutPrefix(line, "S ")
		if !ok {
			continue
		}
		if lid, ok := sealedID(rest); ok && lid == id {
			lines[i] = "S " + string(editSealed(t, key, []byte(rest), edit))
			n++
		}
	}
	if n == 0 {
		t.Fatalf("the journal holds no state of %s", id)
	}
	if err := os.WriteFile(filepath.Join(dir, journalFile), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
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

// within fails the test unless ch delivers within a generous bound; the
// bound only keeps a broken test from hanging, it is not a measurement.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
		panic("unreachable")
	}
}

// createHeld is create for a session that holds a byte (the first of a
// two-byte upload), so that it is stored: a session without bytes is
// kept in memory only, and revived from its id when needed.
func createHeld(t testing.TB, st *Store, root, rel string) *Session {
	t.Helper()
	sess := create(t, st, root, rel)
	mustWrite(t, sess, []byte("ab"), 0, 0)
	return sess
}
