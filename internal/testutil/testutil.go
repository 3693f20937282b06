// Package testutil holds the helpers that the tests of several packages
// of caddy-bits share: mounting a small file system, comparing files by
// their SHA-256, making reproducible test data, a clock that only the
// test moves, running a Caddy process with this module, and running an S3
// gateway on a loopback port.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
)

// MountTmpfs mounts a tmpfs of the given size (as mount(8) takes it, such
// as "8m") on a new temporary directory and returns the directory. It
// unmounts it when the test ends, before the directory is removed. Where
// a tmpfs cannot be mounted (not running as root, no mount command, the
// mount fails), it skips the test and says why.
func MountTmpfs(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a tmpfs needs root")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("skipped: no mount command to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs of size %s: %v: %s", size, err, out)
	}
	// Registered after TempDir's cleanup, so it runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// AssertFile fails the test at once unless the file at path holds exactly
// want, compared by SHA-256.
func AssertFile(t testing.TB, path string, want []byte) {
	t.Helper()
	if msg := compareFile(path, want); msg != "" {
		t.Fatal(msg)
	}
}

// CheckFile is AssertFile that lets the test go on: it reports a
// mismatch as an error and returns whether the file holds exactly want.
func CheckFile(t testing.TB, path string, want []byte) bool {
	t.Helper()
	if msg := compareFile(path, want); msg != "" {
		t.Error(msg)
		return false
	}
	return true
}

// compareFile returns why the file at path does not hold exactly want, or
// "" when it does.
func compareFile(path string, want []byte) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Sprintf("reading %s: %v", path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if w := SHA256(want); got != w {
		return fmt.Sprintf("%s: sha256 %s (size %d), want %s (size %d)", path, got, n, w, len(want))
	}
	return ""
}

// SHA256 returns the hex-encoded SHA-256 of b.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RandomBytes returns n pseudo-random bytes determined by seed: the same
// seed always gives the same bytes, and different seeds give bytes that
// differ almost everywhere.
func RandomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) //nolint:gosec // reproducible test data, not a secret
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
