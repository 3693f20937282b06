//go:build linux

package session

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeBack writes the data of f to the disk and waits until it is there,
// without a journal commit.
func writeBack(f *os.File) error {
	return unix.SyncFileRange(int(f.Fd()), 0, 0,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}

// Magic numbers of the file systems whose fsync of a file commits the
// names linked to it before: ext4 (and ext3) commit the whole running
// journal transaction, which holds the link; XFS forces its log up to the
// file's last change, and the link was logged with the directory's change
// in one transaction; Btrfs logs the new names of the inode it syncs.
const (
	ext4Magic  = 0xEF53
	xfsMagic   = 0x58465342
	btrfsMagic = 0x9123683E
)

// syncsNewNames reports whether dir is on ext4, XFS or Btrfs (see the
// magic numbers above). On any other file system, and when the type
// cannot be read, placing an upload fsyncs the directory as well.
func syncsNewNames(dir *os.File) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(dir.Fd()), &st); err != nil {
		return false
	}
	switch uint32(st.Type) { //nolint:gosec // magic numbers are 32 bits
	case ext4Magic, xfsMagic, btrfsMagic:
		return true
	}
	return false
}
