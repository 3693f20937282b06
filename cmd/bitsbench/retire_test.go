package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRetire checks that a retired run keeps its files, emptied, until
// removeRetired deletes the whole directory.
func TestRetire(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "small-baseline-lean-0")
	files := []string{filepath.Join(dir, "root", "bench", "0", "f0.bin"), filepath.Join(dir, "server.log")}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, make([]byte, 5000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := retire(dir); err != nil {
		t.Fatalf("retire: %v", err)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatalf("after retire: %v", err)
		}
		if fi.Size() != 0 {
			t.Errorf("%s holds %d bytes after retire, want 0", f, fi.Size())
		}
	}
	removeRetired()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after removeRetired, stat %s: %v, want it gone", dir, err)
	}
	if len(retired) != 0 {
		t.Errorf("removeRetired left %d directories listed", len(retired))
	}
}
