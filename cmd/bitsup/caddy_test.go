package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

// TestMain removes the Caddy binary built for the run.
func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBuiltCaddy()
	os.Exit(code)
}

// randomFile writes size random bytes to path and returns their SHA-256.
func randomFile(t testing.TB, path string, size int64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// fileSum returns the SHA-256 of the file at path.
func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// runUntil runs bitsup with args like main does, failing the test when it
// does not return within the timeout.
func runUntil(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, args, &out, io.Discard)
	if ctx.Err() != nil {
		t.Fatalf("bitsup %q did not return within %v: %v", args, timeout, err)
	}
	return out.String(), err
}
