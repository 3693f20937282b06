// Package repodir finds the checkout of this repository that a test or a
// development tool runs in, and the tools test.sh installs into it.
package repodir

import (
	"errors"
	"os"
	"path/filepath"
)

// Root returns the directory of the nearest go.mod at or above the
// working directory.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Bin returns the path of the tool name in the repository's .bin, where
// test.sh installs the tools the tests need. It does not check that the
// tool is there.
func Bin(name string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".bin", name), nil
}
