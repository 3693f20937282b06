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
	// What remove writes first, before it deletes the files.
	log, err := os.OpenFile(filepath.Join(dir, journalFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(log, "X %s %d\n", id.Bare(), time.Now().Unix())
	log.Close()
	// Half deleted: the state file is gone, the data is not.
	if err := os.Remove(statePathIn(dir, id)); err != nil {
		t.Fatal(err)
	}
	mustExist(t, filepath.Join(dir, activeName, id.Bare()+dataSuffix))

	store = openStore(t, dir, Options{})
	mustHaveNoFiles(t, dir, id)
	if _, err := store.Get(id); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get = %v, want ErrClosed", err)
	}
}
