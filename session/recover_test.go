package session

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	sess := create(t, first, "", "f.bin")
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
	if err := commit(t, done, false); err != nil {
		t.Fatal(err)
	}
	final := FinalInfo{ReplyURL: "https://example.com/reply/1", ReplyStatic: true, ReplyModified: clock.Now().Add(-time.Minute)}
	if err := done.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := done.Finish(final); err != nil {
		t.Fatal(err)
	}
	done.Unlock()
	empty := completed(t, store, root, "empty.bin", nil)

	before := map[protocol.SessionID]State{}
	for _, s := range []*Session{fresh, partial, done, empty} {
		before[s.ID()] = s.State()
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openStore(t, dir, Options{Now: clock.Now, CheckpointBytes: 1024})
	if store.Len() != 4 {
		t.Fatalf("Len after reopen = %d, want 4", store.Len())
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
	if got := fileSum(t, p.DataPath()); got != sum(content[:3000]) {
		t.Errorf("partial data changed across reopen")
	}
	d, _ := store.Get(done.ID())
	if info, ok := d.Finished(); !ok || info.ReplyURL != final.ReplyURL || !info.ReplyStatic || !info.ReplyModified.Equal(final.ReplyModified) {
		t.Errorf("Finished after reopen = %+v, %v; want %+v", info, ok, final)
	}
	if err := commit(t, d, false); err != nil {
		t.Errorf("Commit of a committed session after reopen: %v", err)
	}

	// The partial upload resumes where it stopped, and its digest covers
	// bytes from before and after the restart.
	mustWrite(t, p, content, 3000, 4999)
	if !bytes.Equal(p.Digest(), sha(content)) {
		t.Errorf("Digest after resuming %x, want %x", p.Digest(), sha(content))
	}
	if got := fileSum(t, p.DataPath()); got != sum(content) {
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
	if d := diskState(t, sess); d.HashOffset != 1500 {
		t.Fatalf("hash_offset after 1500 bytes = %d, want 1500", d.HashOffset)
	}
	mustWrite(t, sess, content, 1500, 1999) // 500 bytes: no checkpoint
	if d := diskState(t, sess); d.HashOffset != 1500 || d.Received != 1500 {
		t.Fatalf("state.json after 500 more bytes: hash_offset %d received %d, want the checkpoint at 1500", d.HashOffset, d.Received)
	}
	if size := fileSize(t, sess.DataPath()); size != 2000 {
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
	if size := fileSize(t, sess.DataPath()); size != 2000 {
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
	if got := fileSum(t, sess.DataPath()); got != sum(content) {
		t.Fatalf("data SHA-256 %s, want %s", got, sum(content))
	}
}

func TestRecoverCrashOtherBoot(t *testing.T) {
	if bootID() == "" {
		t.Skip("no boot id on this system")
	}
	crashed, id, content := crashAfter(t)
	statePath := filepath.Join(crashed, "active", id.Bare(), stateFile)
	editState(t, statePath, func(m map[string]any) { m["boot_id"] = "00000000-0000-4000-8000-000000000000" })

	store := openStore(t, crashed, Options{CheckpointBytes: 1024})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatalf("Get after crash: %v", err)
	}
	if st := sess.State(); st.Received != 1500 || st.Total != 3000 {
		t.Fatalf("after a reboot: Received %d Total %d; want the checkpoint 1500, 3000", st.Received, st.Total)
	}
	if size := fileSize(t, sess.DataPath()); size != 1500 {
		t.Fatalf("data file %d bytes after a reboot, want truncated to 1500", size)
	}
	if got := fileSum(t, sess.DataPath()); got != sum(content[:1500]) {
		t.Fatal("checkpointed prefix damaged")
	}
	if d := diskStateAt(t, statePath); d.BootID != bootID() {
		t.Errorf("state.json boot_id %q after recovery, want the running boot %q", d.BootID, bootID())
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
	if got := fileSum(t, sess.DataPath()); got != sum(content) {
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
	if err := sess.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := sess.Finish(FinalInfo{ReplyURL: "x"}); err != nil {
		t.Fatal(err)
	}
	sess.Unlock()
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "active", id.Bare(), dataFile), 2500); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{CheckpointBytes: 1024})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	st := sess.State()
	if st.Received != 2500 || st.Complete() || st.Digest != nil || st.Finished {
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
	// The rest of the upload reached the file; state.json never learned.
	f, err := os.OpenFile(filepath.Join(dir, "active", id.Bare(), dataFile), os.O_WRONLY|os.O_APPEND, 0)
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

// TestRecoverDiscardsAndIgnores covers what Open does with damaged session
// directories (removes them) and foreign entries (leaves them alone).
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
	stateOf := func(s *Session) string { return filepath.Join(active, s.ID().Bare(), stateFile) }

	if err := os.Remove(stateOf(missing)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, stateOf(corrupt), []byte(`{"version":1,"id":`))
	writeFile(t, stateOf(empty), nil)
	editState(t, stateOf(version), func(m map[string]any) { m["version"] = 2 })
	editState(t, stateOf(wrongID), func(m map[string]any) { m["id"] = string(good.ID()) })
	editState(t, stateOf(badTotal), func(m map[string]any) { m["total"] = -5 })
	f, err := os.OpenFile(filepath.Join(active, tooLong.ID().Bare(), dataFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 51)) // 101 bytes of a 100-byte upload
	f.Close()

	// Leftovers of interrupted writes in the good session.
	writeFile(t, filepath.Join(active, good.ID().Bare(), stateFile+".tmp"), []byte("half a state"))
	writeFile(t, filepath.Join(active, good.ID().Bare(), "reply.tmp"), []byte("half a reply"))

	// Foreign entries.
	upperID := protocol.NewSessionID([16]byte{0xab, 0xcd})
	foreign := []string{
		"not-a-guid",
		"README.txt",
		toUpper(upperID.Bare()), // a GUID, but not canonical
		"{" + protocol.NewSessionID([16]byte{7}).Bare() + "}", // braced
		protocol.NewSessionID([16]byte{9}).Bare(),             // a GUID-named regular file
	}
	mkdir(t, filepath.Join(active, foreign[0]))
	writeFile(t, filepath.Join(active, foreign[0], stateFile), []byte("{}"))
	writeFile(t, filepath.Join(active, foreign[1]), []byte("hello"))
	mkdir(t, filepath.Join(active, foreign[2]))
	mkdir(t, filepath.Join(active, foreign[3]))
	writeFile(t, filepath.Join(active, foreign[4]), []byte("file"))

	store = openStore(t, dir, Options{})
	if store.Len() != 1 {
		t.Errorf("Len = %d, want 1 (only the good session)", store.Len())
	}
	if g, err := store.Get(good.ID()); err != nil || g.State().Received != 50 {
		t.Fatalf("good session: %v", err)
	}
	mustNotExist(t, filepath.Join(active, good.ID().Bare(), stateFile+".tmp"))
	mustNotExist(t, filepath.Join(active, good.ID().Bare(), "reply.tmp"))
	mustExist(t, filepath.Join(active, good.ID().Bare(), dataFile))
	for name, s := range map[string]*Session{
		"missing state": missing, "corrupt state": corrupt, "empty state": empty,
		"other version": version, "state of another id": wrongID, "data longer than total": tooLong,
		"negative total": badTotal,
	} {
		mustNotExist(t, filepath.Join(active, s.ID().Bare()))
		if _, err := store.Get(s.ID()); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Get = %v, want ErrNotFound", name, err)
		}
	}
	for _, name := range foreign {
		mustExist(t, filepath.Join(active, name))
	}
	mustExist(t, filepath.Join(active, foreign[0], stateFile))
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
	if !bytes.Equal(sess.Digest(), sha(content)) || fileSum(t, sess.DataPath()) != sum(content) {
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
			if d := diskState(t, sess); d.HashOffset != 3000 || len(d.HashState) == 0 {
				t.Fatalf("setup: hash_offset %d, hash_state %d bytes", d.HashOffset, len(d.HashState))
			}
			id := sess.ID()
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			editState(t, filepath.Join(dir, "active", id.Bare(), stateFile), func(m map[string]any) {
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
