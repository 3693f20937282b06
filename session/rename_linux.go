//go:build linux

package session

import "golang.org/x/sys/unix"

// renameNoReplace renames old to new inside the directory dfd, failing
// with EEXIST if new exists.
func renameNoReplace(dfd int, old, new string) error {
	return unix.Renameat2(dfd, old, dfd, new, unix.RENAME_NOREPLACE)
}
