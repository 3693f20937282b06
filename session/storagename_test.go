package session

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStorageName checks that a directory records its storage, refuses
// another one while it holds sessions (whose bytes that one would not
// find), and lets an empty directory change its storage.
func TestStorageName(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	other := func() Options {
		return Options{Storage: NewLocalStorage(filepath.Join(dir, activeName)), StorageName: "s3:example/bucket/"}
	}

	st := openStore(t, dir, Options{})
	sess := create(t, st, root, "a.bin")
	content := randBytes(1, 1000)
	mustWrite(t, sess, content, 0, 499)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, storageNameFile)); err != nil || string(b) != "local\n" {
		t.Fatalf("recorded storage = %q, %v; want \"local\\n\"", b, err)
	}

	_, err := Open(dir, other())
	if !errors.Is(err, ErrStorageMismatch) {
		t.Fatalf("Open with another storage over a held session: %v, want ErrStorageMismatch", err)
	}
	if !strings.Contains(err.Error(), "local") || !strings.Contains(err.Error(), "s3:example/bucket/") {
		t.Errorf("the error names neither storage: %v", err)
	}

	// The refusal lost nothing: the session continues with its storage.
	st = openStore(t, dir, Options{})
	sess, err = st.Get(sess.ID())
	if err != nil {
		t.Fatalf("the session is gone after the refused open: %v", err)
	}
	mustWrite(t, sess, content, 500, 999)
	if _, err := settle(t, sess, SettleOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := fileSum(t, filepath.Join(root, "a.bin")); got != sum(content) {
		t.Fatalf("placed upload has SHA-256 %s, want %s", got, sum(content))
	}
	if _, err := st.Remove(t.Context(), sess.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Without sessions, the directory may change its storage, and back.
	st = openStore(t, dir, other())
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, storageNameFile)); string(b) != "s3:example/bucket/\n" {
		t.Fatalf("recorded storage = %q after the change", b)
	}
	st = openStore(t, dir, Options{})
	_ = st.Close()
}

// TestStorageNameUnrecorded checks that a directory of an earlier version,
// which recorded no storage, counts as the local storage's.
func TestStorageNameUnrecorded(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, Options{})
	sess := create(t, st, t.TempDir(), "a.bin")
	mustWrite(t, sess, fill('x', 10), 0, 9)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, storageNameFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{Storage: NewLocalStorage(filepath.Join(dir, activeName)), StorageName: "s3:x"}); !errors.Is(err, ErrStorageMismatch) {
		t.Fatalf("Open of an unrecorded directory with sessions by another storage: %v, want ErrStorageMismatch", err)
	}
	st = openStore(t, dir, Options{})
	if _, err := st.Get(sess.ID()); err != nil {
		t.Fatalf("the session is gone: %v", err)
	}
}
