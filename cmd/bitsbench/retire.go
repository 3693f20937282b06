package main

import (
	"io/fs"
	"os"
	"path/filepath"
)

// retired lists the run directories that retire emptied, for
// removeRetired to delete once nothing is measured any more.
var retired []string

// retire frees the disk space of a finished run's directory without
// deleting its files: it truncates every regular file in it and keeps the
// directory until removeRetired. Deleting thousands of files between two
// runs would make the next run pay for them: ext4 without a journal skips
// the inodes deleted in the last minutes when it allocates one (its
// recently_deleted check), scanning past each of them for every file the
// next server creates in the same block group. That cost, up to a fifth of
// a server's CPU time after a 10,000-file run, would fall on whichever
// server runs next.
func retire(dir string) error {
	retired = append(retired, dir)
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			return os.Truncate(path, 0)
		}
		return nil
	})
}

// removeRetired deletes the directories that retire emptied.
func removeRetired() {
	for _, dir := range retired {
		os.RemoveAll(dir)
	}
	retired = nil
}
