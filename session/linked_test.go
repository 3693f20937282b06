package session

import (
	"path/filepath"
	"testing"
)

// TestRecoveryNeverTruncatesACommittedFile: the data file of a placed
// upload is a hard link of the destination. After a reboot (another boot
// id) with no checkpoint at the upload's end, recovery must not truncate
// it to the checkpoint, which would truncate the destination too.
func TestRecoveryNeverTruncatesACommittedFile(t *testing.T) {
	content := randBytes(21, 300_000)
	root, dir := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{CheckpointBytes: 1 << 40})
	sess := completed(t, store, root, "f.bin", content)
	if err := commit(t, sess, false); err != nil {
		t.Fatal(err)
	}
	id := sess.ID()
	if d := diskState(t, sess); d.HashOffset >= int64(len(content)) {
		t.Fatalf("test setup: checkpoint at %d already covers the upload", d.HashOffset)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	editState(t, storeKey(t, dir), statePathIn(dir, id), func(m map[string]any) { m["boot_id"] = "another-boot" })

	store = openStore(t, dir, Options{})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := fileSum(t, filepath.Join(root, "f.bin")); got != sum(content) {
		t.Fatalf("destination changed by recovery: %s, want %s", got, sum(content))
	}
	st := sess.State()
	if st.Received != int64(len(content)) || !st.Committed {
		t.Fatalf("recovered state: received %d committed %v", st.Received, st.Committed)
	}
}

// TestRecoveryRewindsAnUncommittedUpload is the counterpart: without a
// second link, bytes past the checkpoint are dropped after a reboot.
func TestRecoveryRewindsAnUncommittedUpload(t *testing.T) {
	content := randBytes(22, 300_000)
	dir := t.TempDir()
	store := openStore(t, dir, Options{CheckpointBytes: 100_000})
	sess := create(t, store, "", "f.bin")
	mustWrite(t, sess, content, 0, 149_999)
	mustWrite(t, sess, content, 150_000, 199_999)
	id := sess.ID()
	waitCheckpoint(t, sess)
	hashOffset := diskState(t, sess).HashOffset
	if hashOffset != 150_000 {
		t.Fatalf("test setup: checkpoint at %d", hashOffset)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	editState(t, storeKey(t, dir), statePathIn(dir, id), func(m map[string]any) { m["boot_id"] = "another-boot" })
	store = openStore(t, dir, Options{})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := sess.State().Received; got != hashOffset {
		t.Fatalf("received %d after a reboot, want the checkpoint %d", got, hashOffset)
	}
	mustWrite(t, sess, content, hashOffset, int64(len(content))-1)
	if got := fileSum(t, dataPath(sess)); got != sum(content) {
		t.Fatal("resumed upload differs")
	}
}
