package session

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestTreeWithoutOpenat2: where openat2 is missing, openTree falls back
// to an *os.Root and still confines paths.
func TestTreeWithoutOpenat2(t *testing.T) {
	noOpenat2.Store(true)
	t.Cleanup(func() { noOpenat2.Store(false) })
	root := t.TempDir()
	if err := os.Symlink("..", filepath.Join(root, "up")); err != nil {
		t.Fatal(err)
	}
	tr, err := openTree(root)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, ok := tr.(osTree); !ok {
		t.Fatalf("openTree without openat2 = %T, want osTree", tr)
	}
	if _, err := tr.Stat("up/x"); !errors.Is(destinationError(err), ErrInvalidDestination) {
		t.Fatalf("Stat through .. = %v, want an invalid destination", err)
	}
}
