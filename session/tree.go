package session

import (
	"io/fs"
	"os"
)

// tree resolves paths inside an upload root without leaving it: symbolic
// links are followed only while they stay inside. openTree returns the
// fastest tree the system offers (see tree_linux.go); *os.Root is the
// portable one.
type tree interface {
	statter
	// OpenDir opens the directory name.
	OpenDir(name string) (*os.File, error)
	// Close releases the tree.
	Close() error
}

// statter returns the file information of a name inside a root, following
// symbolic links: a tree, or an *os.Root.
type statter interface {
	Stat(name string) (fs.FileInfo, error)
}

// osTree is a tree on an *os.Root.
type osTree struct{ *os.Root }

// openOSTree opens root as an *os.Root.
func openOSTree(root string) (tree, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	return osTree{r}, nil
}

// OpenDir implements [tree].
func (t osTree) OpenDir(name string) (*os.File, error) { return t.Open(name) }

// Interface guard
var _ tree = osTree{}
