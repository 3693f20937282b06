//go:build linux

package session

import (
	"os"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

// TestSyncsNewNamesOnlyWhereTheFileSystemCommitsThem checks that a file
// system that does not commit new names with a file's fsync (tmpfs here)
// gets the directory fsync as well, and that a device without a jbd2
// journal counts as having none.
func TestSyncsNewNamesOnlyWhereTheFileSystemCommitsThem(t *testing.T) {
	dir := testutil.MountTmpfs(t, "1m")
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if syncsNewNames(d) {
		t.Error("tmpfs counts as committing new names with a file's fsync")
	}
	if hasJournal(^uint64(0)) {
		t.Error("a device that does not exist counts as having a journal")
	}
}
