package session

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// treeOpeners are the tree implementations of this system: the one
// openTree picks, and the portable *os.Root.
func treeOpeners() map[string]func(string) (tree, error) {
	return map[string]func(string) (tree, error){
		"openTree": openTree,
		"os.Root":  openOSTree,
	}
}

// TestTreeConfinesPaths: both trees resolve names inside the root,
// following symbolic links that stay inside, and refuse every path that
// leaves the root, through "..", a relative or absolute link, or a /proc
// magic link, as an invalid destination.
func TestTreeConfinesPaths(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges on Windows")
	}
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "in", "deep")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "in", "f.bin"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"in/up":      "..",                      // the root itself
		"in/sibling": "deep",                    // a directory inside
		"in/file":    "f.bin",                   // a file inside
		"in/relout":  "../../outside",           // leaves through ..
		"in/absout":  outside,                   // an absolute link
		"in/absin":   filepath.Join(root, "in"), // absolute, even if it points inside
		"in/magic":   "/proc/self/root",
		"in/loop":    "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for impl, open := range treeOpeners() {
		t.Run(impl, func(t *testing.T) {
			tr, err := open(root)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			for _, name := range []string{"in", "in/deep", "in/up/in", "in/sibling", "."} {
				fi, err := tr.Stat(name)
				if err != nil || !fi.IsDir() {
					t.Errorf("Stat(%q) = %v, %v; want a directory", name, fi, err)
				}
				d, err := tr.OpenDir(name)
				if err != nil {
					t.Errorf("OpenDir(%q): %v", name, err)
					continue
				}
				_ = d.Close()
			}
			for _, name := range []string{"in/f.bin", "in/file"} {
				fi, err := tr.Stat(name)
				if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len("inside")) {
					t.Errorf("Stat(%q) = %v, %v; want the 6-byte file", name, fi, err)
				}
			}
			if _, err := tr.Stat("in/none"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat of a missing name: %v, want fs.ErrNotExist", err)
			}
			if _, err := tr.OpenDir("in/none"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("OpenDir of a missing name: %v, want fs.ErrNotExist", err)
			}
			// Longer than one system call takes, in names a file system
			// allows: missing, as os.Root finds it name by name.
			long := "in/" + strings.Repeat(strings.Repeat("n", 250)+"/", 20) + "f.bin"
			if _, err := tr.Stat(long); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat of a missing %d-byte path: %.200v, want fs.ErrNotExist", len(long), err)
			}
			for _, name := range []string{
				"..", "../outside/secret", "in/../../outside",
				"in/relout/secret", "in/relout", "in/absout/secret", "in/absin/f.bin",
				"in/magic/etc", "in/loop/x",
			} {
				if fi, err := tr.Stat(name); err == nil {
					t.Errorf("Stat(%q) left the root: %v", name, fi.Name())
				} else if !errors.Is(destinationError(err), ErrInvalidDestination) {
					t.Errorf("Stat(%q) = %v; want an invalid destination", name, err)
				}
				if d, err := tr.OpenDir(name); err == nil {
					_ = d.Close()
					t.Errorf("OpenDir(%q) left the root", name)
				}
			}
		})
	}
}
