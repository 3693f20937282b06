package session

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRecoveryFinishesAnInterruptedRemove: the process died after
// recording a Close-Session's tombstone but before the session's files
// were gone. The next Open deletes them, and the id answers as closed.
func TestRecoveryFinishesAnInterruptedRemove(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	sess := create(t, store, "", "f.bin")
	content := randBytes(31, 5000)
	mustWrite(t, sess, content, 0, 2999)
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// What remove writes first, before it deletes the directory.
	log, err := os.OpenFile(filepath.Join(dir, "closed.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(log, "%s %d\n", id.Bare(), time.Now().Unix())
	log.Close()
	// Half deleted: the state file is gone, the data is not.
	if err := os.Remove(filepath.Join(dir, "active", id.Bare(), stateFile)); err != nil {
		t.Fatal(err)
	}

	store = openStore(t, dir, Options{})
	if _, err := os.Stat(filepath.Join(dir, "active", id.Bare())); !os.IsNotExist(err) {
		t.Fatalf("session directory still there after recovery: %v", err)
	}
	if _, err := store.Get(id); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get = %v, want ErrClosed", err)
	}
}
