package session

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestStored: Stored lists the sessions of a store directory as the next
// Open finds them, while the store is open and after it closed: sessions
// with files and sessions whose state is a journal line, but not closed
// ones nor leftovers of interrupted writes.
func TestStored(t *testing.T) {
	if ids, err := Stored(filepath.Join(t.TempDir(), "missing")); err != nil || len(ids) != 0 {
		t.Fatalf("Stored of a missing directory = %v, %v; want none", ids, err)
	}
	dir, root := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(98, 1000)
	_ = create(t, store, root, "empty.bin")
	held := create(t, store, root, "held.bin")
	mustWrite(t, held, content, 0, 99)
	placed := create(t, store, root, "placed.bin")
	if _, err := writeOpts(t, placed, rng(0, 999, 1000), bytes.NewReader(content), WriteOptions{Place: true}); err != nil {
		t.Fatal(err)
	}
	closed := create(t, store, root, "closed.bin")
	mustWrite(t, closed, content, 0, 99)
	if _, err := store.Remove(t.Context(), closed.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	closedEmpty := create(t, store, root, "closed-empty.bin")
	if _, err := store.Remove(t.Context(), closedEmpty.ID(), RemovedCancelled); err != nil {
		t.Fatal(err)
	}
	tmpOnly := protocol.NewSessionID([16]byte{0x77})
	writeFile(t, filepath.Join(dir, activeName, tmpOnly.Bare()+stateSuffix+".tmp"), []byte("half a state"))

	// The session that holds nothing is stored nowhere (it revives from
	// its id).
	want := []protocol.SessionID{held.ID(), placed.ID()}
	slices.Sort(want)
	check := func(when, dir string) {
		t.Helper()
		got, err := Stored(dir)
		if err != nil {
			t.Fatalf("%s: Stored: %v", when, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: Stored = %v, want %v", when, got, want)
		}
	}
	check("open", dir)

	crashed := filepath.Join(t.TempDir(), "crashed")
	copyTree(t, dir, crashed)
	check("crashed copy", crashed)
	reopened := openStore(t, crashed, Options{})
	var listed []protocol.SessionID
	for _, st := range reopened.List() {
		listed = append(listed, st.ID)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("Open of the crashed copy found %v, Stored said %v", listed, want)
	}

	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed", dir)
}
