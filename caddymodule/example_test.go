package caddymodule_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

// TestExampleCaddyfile runs Caddyfile.example, as shipped except for its
// port and an admin endpoint of its own, and uploads through it.
func TestExampleCaddyfile(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	cfg := string(example)
	if !strings.Contains(cfg, ":8080 {") || !strings.Contains(cfg, "persist_config off") {
		t.Fatalf("Caddyfile.example no longer serves :8080 without persisting its config:\n%s", cfg)
	}
	cfg = strings.Replace(cfg, ":8080 {", ":"+strconv.Itoa(port)+" {", 1)
	cfg = strings.Replace(cfg, "persist_config off", "persist_config off\n\tadmin 127.0.0.1:"+strconv.Itoa(admin), 1)
	dir := t.TempDir()
	testutil.StartCaddy(t, dir, cfg, admin)

	data := randomBytes(t, 3<<20+5)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/reports/2026/q4.bin"
	res, err := newClient().Upload(context.Background(), url, bytesReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete {
		t.Fatalf("result %+v", res)
	}
	assertFile(t, filepath.Join(dir, "uploads", "reports", "2026", "q4.bin"), data)
	// Sessions live in Caddy's data directory, outside the uploads.
	if dirs := sessionDirs(t, filepath.Join(dir, "data", "caddy", "bits_upload", "sessions")); len(dirs) != 0 {
		t.Fatalf("sessions left: %v", dirs)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "caddy", "bits_upload", "sessions", "lock")); err != nil {
		t.Fatalf("the default session_dir was not used: %v", err)
	}
}
