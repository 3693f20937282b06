package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestNotifyCaddyfileAdapt runs the notify_* golden files of
// testdata/caddyfile_adapt (which TestCaddyfileAdapt runs too), so that
// -run Notify covers the notify syntax.
func TestNotifyCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "notify_*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d notify golden files, want at least 10", len(files))
	}
	newlines := regexp.MustCompile(`\r?\n`)
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".caddyfiletest"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(newlines.ReplaceAllString(string(data), "\n"), "----------")
			if len(parts) != 2 {
				t.Fatalf("want exactly one line of ten hyphens, got %d parts", len(parts))
			}
			caddyfile, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			if expected == "" {
				t.Fatal("empty expectation")
			}
			if expected[0] == '{' {
				if !caddytest.CompareAdapt(t, name, caddyfile, "caddyfile", expected) {
					t.Errorf("adapted JSON of %s differs from the golden file", name)
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err == nil {
				t.Fatalf("expected an adapt error containing %q, got none", expected)
			}
			if !strings.Contains(err.Error(), expected) {
				t.Errorf("adapt error\n got: %s\nwant substring: %s", err, expected)
			}
		})
	}
}

// TestNotifyConfigValidation loads notify configs that adapt but must not
// pass validation, and a few that must.
func TestNotifyConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		notify string // JSON of the notify object
		err    string // substring of the error; "" for valid
	}{
		{"minimal", `{"url": "http://127.0.0.1:9/hook"}`, ""},
		{"relative", `{"url": "../hooks/done"}`, ""},
		{"placeholder", `{"url": "http://{http.request.host}:9/hook"}`, ""},
		{"all", `{"url": "https://app.example.com/x", "type": "reference", "timeout": 1000000000, "max_reply_size": 10,
			"headers": {"X-A": ["1", "2"]}, "transport": {"protocol": "http", "dial_timeout": 3000000000}}`, ""},
		{"ftp scheme", `{"url": "ftp://127.0.0.1/hook"}`, "must use http or https"},
		{"no url", `{"type": "value"}`, "a URL is required"},
		{"bad type", `{"url": "http://127.0.0.1:9/hook", "type": "file"}`, `type must be "value" or "reference"`},
		{"negative timeout", `{"url": "http://127.0.0.1:9/hook", "timeout": -1}`, "timeout must not be negative"},
		{"negative max_reply_size", `{"url": "http://127.0.0.1:9/hook", "max_reply_size": -1}`, "max_reply_size must not be negative"},
		{"unknown transport", `{"url": "http://127.0.0.1:9/hook", "transport": {"protocol": "carrier_pigeon"}}`, "carrier_pigeon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			handler := fmt.Sprintf(`{"handler": "bits_upload", "root": %q, "session_dir": %q, "notify": %s}`,
				filepath.Join(dir, "root"), filepath.Join(dir, "sessions"), tc.notify)
			raw := `{"admin": {"disabled": true}, "apps": {"http": {"servers": {"v": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [` + handler + `]}]}}}}}`
			var cfg caddy.Config
			if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("bad test config: %v", err)
			}
			err := caddy.Validate(&cfg)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("valid config refused: %v", err)
			case tc.err != "" && err == nil:
				t.Errorf("config accepted, want an error containing %q", tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Errorf("error %q, want it to contain %q", err, tc.err)
			}
		})
	}
}
