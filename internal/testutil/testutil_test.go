package testutil

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recorder is a testing.TB that records failures instead of reporting
// them, so that the helpers' own failures can be checked.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatal  bool
}

func (r *recorder) Helper() {}

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprint(args...))
}

func (r *recorder) Fatal(args ...any) {
	r.Error(args...)
	r.mu.Lock()
	r.fatal = true
	r.mu.Unlock()
}

func TestRandomBytes(t *testing.T) {
	a, b := RandomBytes(1, 4096), RandomBytes(1, 4096)
	if !bytes.Equal(a, b) {
		t.Fatal("RandomBytes with one seed gave different bytes")
	}
	if len(RandomBytes(7, 13)) != 13 || len(RandomBytes(7, 0)) != 0 {
		t.Fatal("RandomBytes returned the wrong length")
	}
	c := RandomBytes(2, 4096)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	// Two independent streams agree on about one byte in 256.
	if same > 64 {
		t.Fatalf("seeds 1 and 2 agree on %d of 4096 bytes", same)
	}
}

func TestAssertAndCheckFile(t *testing.T) {
	dir := t.TempDir()
	want := RandomBytes(3, 10000)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}

	r := &recorder{TB: t}
	if !CheckFile(r, path, want) || len(r.errors) != 0 {
		t.Fatalf("CheckFile of an equal file: errors %q", r.errors)
	}
	AssertFile(r, path, want)
	if len(r.errors) != 0 || r.fatal {
		t.Fatalf("AssertFile of an equal file: errors %q", r.errors)
	}

	other := append([]byte(nil), want...)
	other[5000] ^= 1
	if CheckFile(r, path, other) {
		t.Fatal("CheckFile accepted a file that differs in one bit")
	}
	if len(r.errors) != 1 || r.fatal {
		t.Fatalf("CheckFile of a different file: errors %q, fatal %v; want one error, not fatal", r.errors, r.fatal)
	}
	if !strings.Contains(r.errors[0], SHA256(other)) || !strings.Contains(r.errors[0], SHA256(want)) {
		t.Errorf("CheckFile's message %q names neither both digests", r.errors[0])
	}

	r = &recorder{TB: t}
	AssertFile(r, path, want[:9999])
	if len(r.errors) != 1 || !r.fatal {
		t.Fatalf("AssertFile of a shorter want: errors %q, fatal %v; want one fatal error", r.errors, r.fatal)
	}

	r = &recorder{TB: t}
	if CheckFile(r, filepath.Join(dir, "missing"), nil) || len(r.errors) != 1 {
		t.Fatalf("CheckFile of a missing file: errors %q", r.errors)
	}
}

func TestMountTmpfs(t *testing.T) {
	dir := MountTmpfs(t, "1m")
	// A 1 MiB tmpfs refuses a 2 MiB file: the directory is the mount, not
	// the disk underneath.
	err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 2<<20), 0o644)
	if err == nil {
		t.Fatal("a 2 MiB file fit on a 1 MiB tmpfs")
	}
}
