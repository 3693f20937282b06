//go:build !linux

package session

// openTree opens an upload root as a tree.
func openTree(root string) (tree, error) { return openOSTree(root) }
