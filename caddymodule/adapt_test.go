package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddy-bits/caddy-bits/caddymodule"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestCaddyfileAdapt runs the golden files in testdata/caddyfile_adapt, in
// the format of Caddy's own caddytest/integration/caddyfile_adapt: a
// Caddyfile, a line of ten hyphens, then either the expected JSON or, when
// it does not start with '{', text the adapt error must contain.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files found in testdata/caddyfile_adapt")
	}

	winNewlines := regexp.MustCompile(`\r?\n`)
	// file_server hides the Caddyfile by an OS-specific relative path.
	replacePath, _ := json.Marshal(fmt.Sprint(".", string(filepath.Separator), "Caddyfile"))

	for _, path := range files {
		filename := filepath.Base(path)
		t.Run(strings.TrimSuffix(filename, ".caddyfiletest"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading %s: %v", filename, err)
			}
			parts := strings.Split(winNewlines.ReplaceAllString(string(data), "\n"), "----------")
			if len(parts) != 2 {
				t.Fatalf("%s: want exactly one line of ten hyphens, got %d parts", filename, len(parts))
			}
			caddyfile, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			if expected == "" {
				t.Fatalf("%s: empty expectation", filename)
			}
			expected = strings.ReplaceAll(expected, `"./Caddyfile"`, string(replacePath))

			if expected[0] == '{' {
				if !caddytest.CompareAdapt(t, filename, caddyfile, "caddyfile", expected) {
					t.Errorf("adapted JSON of %s differs from the golden file (diff printed above)", filename)
				}
				return
			}

			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err == nil {
				t.Fatalf("%s: expected adapt error containing %q, got none", filename, expected)
			}
			if got := winNewlines.ReplaceAllString(err.Error(), "\n"); !strings.Contains(got, expected) {
				t.Errorf("%s: adapt error\n got: %s\nwant substring: %s", filename, got, expected)
			}
		})
	}
}
