package session

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

func TestIsDiskFull(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{syscall.ENOSPC, true},
		{syscall.EDQUOT, true},
		{&os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{fmt.Errorf("writing data file: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}), true},
		{syscall.EIO, false},
		{syscall.EFBIG, false},
		{errors.New("no space left on device"), false}, // text alone is not enough
		{ErrBodyIncomplete, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsDiskFull(tt.err); got != tt.want {
			t.Errorf("IsDiskFull(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestWriteFailureKeepsInvariant makes the data file's write fail in the
// middle of a fragment, inside one buffer, with RLIMIT_FSIZE: the kernel
// writes up to the limit and then fails with EFBIG. Write must drop the
// part of the buffer that reached the file, so that the file's size stays
// equal to Received, and the upload must resume from there.
func TestWriteFailureKeepsInvariant(t *testing.T) {
	const limit = 300 << 10 // inside the second 256 KiB buffer
	content := randBytes(60, 700<<10)
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	mustWrite(t, sess, content, 0, 9999) // so the state file holds the total before the limit

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	res, err := write(t, sess, content, 10000, int64(len(content)-1))
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatalf("restoring RLIMIT_FSIZE: %v", rerr)
	}
	if err == nil {
		t.Fatalf("Write past RLIMIT_FSIZE succeeded: %+v", res)
	}
	if !errors.Is(err, syscall.EFBIG) {
		t.Errorf("err = %v, want it to wrap EFBIG", err)
	}
	if errors.Is(err, ErrBodyIncomplete) || IsDiskFull(err) {
		t.Errorf("err = %v misclassified (body incomplete %v, disk full %v)", err, errors.Is(err, ErrBodyIncomplete), IsDiskFull(err))
	}
	st := sess.State()
	size := fileSize(t, dataPath(sess))
	if size != st.Received || res.Received != st.Received {
		t.Fatalf("after a failed write: file %d bytes, State().Received %d, result Received %d; all must be equal",
			size, st.Received, res.Received)
	}
	if st.Received >= limit || st.Received < 10000 {
		t.Fatalf("Received %d, want between the earlier 10000 and the limit %d", st.Received, limit)
	}
	if res.Written != st.Received-10000 {
		t.Errorf("Written %d, want %d", res.Written, st.Received-10000)
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content[:st.Received]) {
		t.Fatal("prefix kept after the failure differs from the upload")
	}
	t.Logf("write failed at %d, kept %d bytes", limit, st.Received)

	res = mustWrite(t, sess, content, st.Received, int64(len(content)-1))
	if !res.Complete {
		t.Fatalf("resumed upload: %+v", res)
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content) {
		t.Fatalf("data SHA-256 %s, want %s", got, sum(content))
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
}

// TestDiskFull puts the store on a small tmpfs and fills it.
func TestDiskFull(t *testing.T) {
	mnt := testutil.MountTmpfs(t, "8m")
	store := openStore(t, filepath.Join(mnt, "store"), Options{})
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 5<<20), 0o644); err != nil {
		t.Fatalf("writing filler: %v", err)
	}
	const frag = 500 << 10 // not a multiple of the write buffer
	content := randBytes(61, 4<<20)
	sess := create(t, store, "", "f.bin")

	var failErr error
	var off int64
	for off < int64(len(content)) {
		last := min(off+frag, int64(len(content))) - 1
		res, err := write(t, sess, content, off, last)
		if err != nil {
			failErr = err
			off = res.Received
			break
		}
		off = last + 1
	}
	if failErr == nil {
		t.Fatal("the upload fit on the full tmpfs; test setup is wrong")
	}
	if !IsDiskFull(failErr) {
		t.Fatalf("failing Write: %v; IsDiskFull = false", failErr)
	}
	st := sess.State()
	if size := fileSize(t, dataPath(sess)); size != st.Received || off != st.Received {
		t.Fatalf("after ENOSPC: file %d bytes, Received %d, result %d", size, st.Received, off)
	}
	if st.Received == 0 || st.Received >= int64(len(content)) {
		t.Fatalf("Received %d: the disk filled at an unexpected point", st.Received)
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content[:st.Received]) {
		t.Fatal("data before the failure damaged")
	}
	t.Logf("disk full after %d bytes: %v", st.Received, failErr)

	// Retrying while still full fails the same way and keeps the invariant.
	if _, err := write(t, sess, content, st.Received, int64(len(content)-1)); !IsDiskFull(err) {
		t.Fatalf("retry on a full disk: %v", err)
	}
	if size := fileSize(t, dataPath(sess)); size != sess.State().Received {
		t.Fatalf("after the retry: file %d bytes, Received %d", size, sess.State().Received)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for off = sess.State().Received; off < int64(len(content)); {
		last := min(off+frag, int64(len(content))) - 1
		res := mustWrite(t, sess, content, off, last)
		off = res.Received
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content) {
		t.Fatalf("data SHA-256 %s, want %s", got, sum(content))
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
	waitCheckpoint(t, sess)
	if d := diskState(t, sess); d.HashOffset > int64(len(content)) {
		t.Fatalf("state file after completion: hash_offset %d", d.HashOffset)
	}
}
