package session

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestOpenTwiceFails(t *testing.T) {
	dir := t.TempDir()
	first := openStore(t, dir, Options{})
	if second, err := Open(dir, Options{}); err == nil {
		_ = second.Close()
		t.Fatal("second Open of a directory in use succeeded")
	}
	// The failed Open must not have disturbed the first store.
	sess := createHeld(t, first, "", "f.bin")
	if _, err := first.Get(sess.ID()); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again := openStore(t, dir, Options{})
	if _, err := again.Get(sess.ID()); err != nil {
		t.Fatalf("session lost across Close/Open: %v", err)
	}
}

// TestReopenAfterClose checks that every kind of session survives a clean
// restart with its metadata and data intact.
func TestReopenAfterClose(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	clock := newFakeClock()
	store := openStore(t, dir, Options{Now: clock.Now, CheckpointBytes: 1024})

	content := randBytes(20, 5000)
	fresh := create(t, store, root, "fresh.bin")
	clock.Advance(time.Second)
	partial := create(t, store, root, "dir/partial.bin")
	mustWrite(t, partial, content, 0, 2999)
	clock.Advance(time.Second)
	done := completed(t, store, root, "done.bin", content)
	final := FinalInfo{ReplyURL: "https://example.com/reply/1", ReplyStatic: true, ReplyModified: clock.Now().Add(-time.Minute), Commit: true}
	calls := 0
	if _, err := settle(t, done, SettleOptions{Notify: notifyWith(final, &calls)}); err != nil {
		t.Fatal(err)
	}
	if !done.State().Committed {
		t.Fatal("delivered upload not placed")
	}
	empty := completed(t, store, root, "empty.bin", nil)

	before := map[protocol.SessionID]State{}
	for _, s := range []*Session{partial, done, empty} {
		before[s.ID()] = s.State()
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openStore(t, dir, Options{Now: clock.Now, CheckpointBytes: 1024})
	// The session that held nothing is kept nowhere: its client's next
	// packet revives it.
	if store.Len() != 3 {
		t.Fatalf("Len after reopen = %d, want 3", store.Len())
	}
	if s, err := store.Revive(fresh.ID(), CreateInfo{Root: root, Path: "fresh.bin", User: "alice"}); err != nil {
		t.Fatalf("Revive(fresh) after reopen: %v", err)
	} else if st := s.State(); st.Received != 0 || st.Total != -1 || st.Path != "fresh.bin" || st.Root != root || st.User != "alice" {
		t.Errorf("revived fresh session: %+v", st)
	}
	for id, want := range before {
		sess, err := store.Get(id)
		if err != nil {
			t.Fatalf("Get(%s) after reopen: %v", id, err)
		}
		got := sess.State()
		if got.Received != want.Received || got.Total != want.Total || got.Path != want.Path ||
			got.Root != want.Root || got.URL != want.URL || got.User != want.User || got.Client != want.Client ||
			!got.Created.Equal(want.Created) || got.Committed != want.Committed || got.Finished != want.Finished ||
			!bytes.Equal(got.Digest, want.Digest) {
			t.Errorf("session %s after reopen:\n got %+v\nwant %+v", want.Path, got, want)
		}
	}
	p, _ := store.Get(partial.ID())
	if got := fileSum(t, dataPath(p)); got != sum(content[:3000]) {
		t.Errorf("partial data changed across reopen")
	}
	d, _ := store.Get(done.ID())
	if info, ok := d.Finished(); !ok || info.ReplyURL != final.ReplyURL || !info.ReplyStatic || !info.ReplyModified.Equal(final.ReplyModified) {
		t.Errorf("Finished after reopen = %+v, %v; want %+v", info, ok, final)
	}
	if res, err := settle(t, d, SettleOptions{Notify: notifyWith(final, &calls)}); err != nil || !res.Cached || calls != 1 {
		t.Errorf("Settle of a settled session after reopen = %+v, %v after %d notifications; want the cached answer", res, err, calls)
	}
	testutil.AssertFile(t, filepath.Join(root, "done.bin"), content)

	// The partial upload resumes where it stopped, and its digest covers
	// bytes from before and after the restart.
	mustWrite(t, p, content, 3000, 4999)
	if !bytes.Equal(p.Digest(), sha(content)) {
		t.Errorf("Digest after resuming %x, want %x", p.Digest(), sha(content))
	}
	if got := fileSum(t, dataPath(p)); got != sum(content) {
		t.Errorf("data SHA-256 after resuming %s, want %s", got, sum(content))
	}
}

// crashAfter builds, in a store with 1 KiB checkpoints, a session whose
// data file holds 2000 bytes of which the last checkpoint covers 1500, and
// copies the store's directory while the store is still open: the state a
// process crash (kill -9) leaves behind. It returns the copy's path, the
// session id and the upload.
func crashAfter(t *testing.T) (string, protocol.SessionID, []byte) {
	t.Helper()
	clock := newFakeClock()
	dir := t.TempDir()
	store := openStore(t, dir, Options{Now: clock.Now, CheckpointBytes: 1024})
	content := randBytes(21, 3000)
	sess := create(t, store, "", "f.bin")

	mustWrite(t, sess, content, 0, 1499)
	waitCheckpoint(t, sess)
	if d := diskState(t, sess); d.HashOffset != 1500 {
		t.Fatalf("hash_offset after 1500 bytes = %d, want 1500", d.HashOffset)
	}
	mustWrite(t, sess, content, 1500, 1999) // 500 bytes: no checkpoint
	if d := diskState(t, sess); d.HashOffset != 1500 || d.Received != 1500 {
		t.Fatalf("state file after 500 more bytes: hash_offset %d received %d, want the checkpoint at 1500", d.HashOffset, d.Received)
	}
	if size := fileSize(t, dataPath(sess)); size != 2000 {
		t.Fatalf("data file %d bytes", size)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyTree(t, dir, crashed)
	return crashed, sess.ID(), content
}

func TestRecoverCrashSameBoot(t *testing.T) {
	if bootID() == "" {
		t.Skip("no boot id on this system")
	}
	crashed, id, content := crashAfter(t)
	store := openStore(t, crashed, Options{CheckpointBytes: 1024})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatalf("Get after crash: %v", err)
	}
	st := sess.State()
	if st.Received != 2000 || st.Total != 3000 || st.Path != "f.bin" {
		t.Fatalf("after crash: Received %d Total %d Path %q; want 2000 3000 f.bin (the data file is trusted under the same boot)",
			st.Received, st.Total, st.Path)
	}
	if size := fileSize(t, dataPath(sess)); size != 2000 {
		t.Fatalf("data file truncated to %d under the same boot", size)
	}
	// The hash tail 1500-1999 must be recomputed from the file.
	res := mustWrite(t, sess, content, 2000, 2999)
	if !res.Complete {
		t.Fatalf("not complete: %+v", res)
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content) {
		t.Fatalf("data SHA-256 %s, want %s", got, sum(content))
	}
}

func TestRecoverCrashOtherBoot(t *testing.T) {
	if bootID() == "" {
		t.Skip("no boot id on this system")
	}
	crashed, id, content := crashAfter(t)
	statePath := statePathIn(crashed, id)
	key := storeKey(t, crashed)
	editState(t, key, statePath, func(m map[string]any) { m["boot_id"] = "00000000-0000-4000-8000-000000000000" })

	store := openStore(t, crashed, Options{CheckpointBytes: 1024})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatalf("Get after crash: %v", err)
	}
	if st := sess.State(); st.Received != 1500 || st.Total != 3000 {
		t.Fatalf("after a reboot: Received %d Total %d; want the checkpoint 1500, 3000", st.Received, st.Total)
	}
	if size := fileSize(t, dataPath(sess)); size != 1500 {
		t.Fatalf("data file %d bytes after a reboot, want truncated to 1500", size)
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content[:1500]) {
		t.Fatal("checkpointed prefix damaged")
	}
	if d := diskStateAt(t, key, statePath); d.BootID != bootID() {
		t.Errorf("state file boot_id %q after recovery, want the running boot %q", d.BootID, bootID())
	}
	// A fragment that assumes the lost bytes are held is a gap; the client
	// rewinds to 1500 and completes.
	if res, err := writeBody(t, sess, rng(2000, 2999, 3000), unreadable{t}); err != nil || res.Action != protocol.Gap || res.Received != 1500 {
		t.Fatalf("fragment past the rewind: %+v, %v; want Gap at 1500", res, err)
	}
	res := mustWrite(t, sess, content, 1500, 2999)
	if !res.Complete {
		t.Fatalf("not complete: %+v", res)
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content) {
		t.Fatalf("data SHA-256 %s, want %s", got, sum(content))
	}
}

// TestRecoverDataShorterThanCheckpoint: the data file lost bytes the
// checkpoint promised (damaged outside the server's control). The session
// continues from what is there; the digest must be of the real bytes.
func TestRecoverDataShorterThanCheckpoint(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{CheckpointBytes: 1024})
	content := randBytes(22, 4000)
	sess := completed(t, store, "", "f.bin", content)
	// A notification's outcome is recorded with a durable checkpoint of
	// the whole upload; with its data intact, recovery would finish it.
	locked(t, sess, func(l *Lease) {
		if err := l.s.setFinal(FinalInfo{ReplyURL: "x"}); err != nil {
			t.Fatal(err)
		}
	})
	if d := diskState(t, sess); d.HashOffset != 4000 || d.Final == nil {
		t.Fatalf("setup: checkpoint at %d, final %+v", d.HashOffset, d.Final)
	}
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "active", id.Bare()+".data"), 2500); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{CheckpointBytes: 1024})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	st := sess.State()
	if st.Received != 2500 || st.Complete() || st.Digest != nil || st.Finished || st.Final != nil {
		t.Fatalf("after losing data: %+v; want Received 2500, incomplete, no digest, not finished", st)
	}
	if _, ok := sess.Finished(); ok {
		t.Fatal("Finished() true for a session that lost data")
	}
	mustWrite(t, sess, content, 2500, 3999)
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
}

// TestRecoverCompleteNoDigest: the process died after the final bytes hit
// the data file but before the completing checkpoint. The recovered
// session is complete; a retransmitted final fragment computes the digest.
func TestRecoverCompleteNoDigest(t *testing.T) {
	if bootID() == "" {
		t.Skip("no boot id on this system")
	}
	dir := t.TempDir()
	store := openStore(t, dir, Options{CheckpointBytes: 1024})
	content := randBytes(23, 3000)
	sess := create(t, store, "", "f.bin")
	mustWrite(t, sess, content, 0, 1999)
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// The rest of the upload reached the file; the state file never
	// learned.
	f, err := os.OpenFile(filepath.Join(dir, "active", id.Bare()+".data"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content[2000:]); err != nil {
		t.Fatal(err)
	}
	f.Close()

	store = openStore(t, dir, Options{CheckpointBytes: 1024})
	sess, err = store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if st := sess.State(); !st.Complete() || st.Digest != nil {
		t.Fatalf("recovered state %+v; want complete without digest", st)
	}
	res, err := writeBody(t, sess, rng(2000, 2999, 3000), unreadable{t})
	if err != nil || res.Action != protocol.AlreadyHeld || !res.Complete {
		t.Fatalf("retransmitted final fragment: %+v, %v", res, err)
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
}

// TestRecoverDiscardsAndIgnores covers what Open does with damaged
// sessions (deletes their files) and foreign files (leaves them alone).
func TestRecoverDiscardsAndIgnores(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(24, 100)
	mk := func() *Session {
		s := create(t, store, "", "f.bin")
		mustWrite(t, s, content, 0, 49)
		return s
	}
	good := mk()
	missing := mk()
	corrupt := mk()
	empty := mk()
	version := mk()
	wrongID := mk()
	tooLong := mk()
	badTotal := mk()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	active := filepath.Join(dir, "active")
	key := storeKey(t, dir)
	stateOf := func(s *Session) string { return statePathIn(dir, s.ID()) }

	if err := os.Remove(stateOf(missing)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, stateOf(corrupt), []byte(`{"mac":"AAAA","state":{"version":2,"id":`))
	writeFile(t, stateOf(empty), nil)
	editState(t, key, stateOf(version), func(m map[string]any) { m["version"] = 3 })
	editState(t, key, stateOf(wrongID), func(m map[string]any) { m["id"] = string(good.ID()) })
	editState(t, key, stateOf(badTotal), func(m map[string]any) { m["total"] = -5 })
	f, err := os.OpenFile(filepath.Join(active, tooLong.ID().Bare()+".data"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 51)) // 101 bytes of a 100-byte upload
	f.Close()

	// Leftovers of interrupted writes of the good session.
	goodState := stateOf(good)
	writeFile(t, goodState+".tmp", []byte("half a state"))
	writeFile(t, good.ReplyPath()+".tmp", []byte("half a reply"))

	// Foreign files.
	upperID := protocol.NewSessionID([16]byte{0xab, 0xcd})
	foreign := []string{
		"not-a-guid",
		"README.txt",
		toUpper(upperID.Bare()) + ".json", // a GUID, but not canonical
		"{" + protocol.NewSessionID([16]byte{7}).Bare() + "}.data", // braced
	}
	for _, name := range foreign {
		writeFile(t, filepath.Join(active, name), []byte("foreign"))
	}

	store = openStore(t, dir, Options{})
	if store.Len() != 1 {
		t.Errorf("Len = %d, want 1 (only the good session)", store.Len())
	}
	if g, err := store.Get(good.ID()); err != nil || g.State().Received != 50 {
		t.Fatalf("good session: %v", err)
	}
	mustNotExist(t, goodState+".tmp")
	mustNotExist(t, good.ReplyPath()+".tmp")
	mustExist(t, goodState)
	mustExist(t, filepath.Join(active, good.ID().Bare()+".data"))
	for name, s := range map[string]*Session{
		"missing state": missing, "corrupt state": corrupt, "empty state": empty,
		"other version": version, "state of another id": wrongID, "data longer than total": tooLong,
		"negative total": badTotal,
	} {
		mustHaveNoFiles(t, dir, s.ID())
		if _, err := store.Get(s.ID()); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Get = %v, want ErrNotFound", name, err)
		}
	}
	for _, name := range foreign {
		mustExist(t, filepath.Join(active, name))
	}
}

// TestRecoverDeletesStrayGUIDFiles: in the flat layout every file named
// after a session id belongs to that session, so the files of a session
// that has no state anywhere (even a regular file named just the id) are
// deleted.
func TestRecoverDeletesStrayGUIDFiles(t *testing.T) {
	dir := t.TempDir()
	if err := openStore(t, dir, Options{}).Close(); err != nil {
		t.Fatal(err)
	}
	stray := protocol.NewSessionID([16]byte{9})
	for _, name := range []string{stray.Bare(), stray.Bare() + ".data", stray.Bare() + ".reply"} {
		writeFile(t, filepath.Join(dir, "active", name), []byte("stray"))
	}
	store := openStore(t, dir, Options{})
	mustHaveNoFiles(t, dir, stray)
	if _, err := store.Get(stray); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(stray) = %v, want ErrNotFound", err)
	}
}

// TestRecoverLeavesForeignDirectories: a directory in the active
// directory that is named by no canonical session id cannot be a session
// of the earlier layout; it is not the store's, and Open must leave it
// and what it holds alone.
func TestRecoverLeavesForeignDirectories(t *testing.T) {
	dir := t.TempDir()
	if err := openStore(t, dir, Options{}).Close(); err != nil {
		t.Fatal(err)
	}
	active := filepath.Join(dir, "active")
	upperID := protocol.NewSessionID([16]byte{0xab, 0xcd})
	foreign := []string{
		"not-a-guid",
		"lost+found",
		toUpper(upperID.Bare()), // a GUID, but not canonical
		"{" + protocol.NewSessionID([16]byte{7}).Bare() + "}", // braced
	}
	for _, name := range foreign {
		writeFile(t, filepath.Join(active, name, "state.json"), []byte("{}"))
	}
	openStore(t, dir, Options{})
	for _, name := range foreign {
		if !fileExists(filepath.Join(active, name, "state.json")) {
			t.Errorf("Open deleted the foreign directory %s", name)
		}
	}
}

func toUpper(s string) string { return string(bytes.ToUpper([]byte(s))) }

// TestRecoverSingleFragmentShortBody: a single-fragment upload whose body
// broke off and whose total was therefore never persisted survives a
// restart with the bytes that arrived.
func TestRecoverSingleFragmentShortBody(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(25, 1000)
	sess := create(t, store, "", "f.bin")
	_, err := writeBody(t, sess, rng(0, 999, 1000), errAfter(content[:600], errors.New("reset")))
	if !errors.Is(err, ErrBodyIncomplete) {
		t.Fatalf("Write = %v", err)
	}
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{})
	sess, err = store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if st := sess.State(); st.Received != 600 {
		t.Fatalf("Received after reopen = %d, want 600", st.Received)
	}
	mustWrite(t, sess, content, 600, 999)
	if !bytes.Equal(sess.Digest(), sha(content)) || fileSum(t, dataPath(sess)) != sum(content) {
		t.Fatal("upload damaged")
	}
}

// TestRecoverCorruptHashState: a checkpoint whose hash state cannot be
// decoded is not trusted; the digest is recomputed from the data file.
func TestRecoverCorruptHashState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value any
	}{
		{"garbage", "AAECAwQFBgc="}, // valid base64, not a SHA-256 state
		{"removed", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store := openStore(t, dir, Options{CheckpointBytes: 1024})
			content := randBytes(26, 5000)
			sess := create(t, store, "", "f.bin")
			mustWrite(t, sess, content, 0, 2999)
			waitCheckpoint(t, sess)
			if d := diskState(t, sess); d.HashOffset != 3000 || len(d.HashState) == 0 {
				t.Fatalf("setup: hash_offset %d, hash_state %d bytes", d.HashOffset, len(d.HashState))
			}
			id := sess.ID()
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			editState(t, storeKey(t, dir), statePathIn(dir, id), func(m map[string]any) {
				if tc.value == nil {
					delete(m, "hash_state")
				} else {
					m["hash_state"] = tc.value
				}
			})
			store = openStore(t, dir, Options{CheckpointBytes: 1024})
			sess, err := store.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if st := sess.State(); st.Received != 3000 {
				t.Fatalf("Received %d, want 3000", st.Received)
			}
			mustWrite(t, sess, content, 3000, 4999)
			if !bytes.Equal(sess.Digest(), sha(content)) {
				t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
			}
		})
	}
}
