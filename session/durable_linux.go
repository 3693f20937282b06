//go:build linux

package session

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// writeBack writes the data of f to the disk and waits until it is there,
// without a journal commit.
func writeBack(f *os.File) error {
	return unix.SyncFileRange(int(f.Fd()), 0, 0,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}

// Magic numbers of the file systems whose fsync of a file commits the
// names linked to it before: ext4 (and ext3) with a journal commit the
// whole running journal transaction, which holds the link; XFS forces its
// log up to the file's last change, and the link was logged with the
// directory's change in one transaction; Btrfs logs the new names of the
// inode it syncs. ext4 without a journal does not: it syncs the parent
// only of a file it created, not of one linked later.
const (
	ext4Magic  = 0xEF53
	xfsMagic   = 0x58465342
	btrfsMagic = 0x9123683E
)

// syncsNewNames reports whether dir is on XFS, Btrfs or ext4 with a
// journal (see the magic numbers above). On any other file system, and
// when that cannot be told, placing an upload fsyncs the directory as
// well.
func syncsNewNames(dir *os.File) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(dir.Fd()), &st); err != nil {
		return false
	}
	switch uint32(st.Type) { //nolint:gosec // magic numbers are 32 bits
	case xfsMagic, btrfsMagic:
		return true
	case ext4Magic:
		var fst unix.Stat_t
		if err := unix.Fstat(int(dir.Fd()), &fst); err != nil {
			return false
		}
		return hasJournal(uint64(fst.Dev)) //nolint:unconvert // the field's type differs between platforms
	}
	return false
}

// journaled caches hasJournal per device.
var journaled sync.Map // device number → bool

// hasJournal reports whether the ext4 file system on the device dev has a
// journal: jbd2 lists every journal it runs as /proc/fs/jbd2/<device>-<inode>.
func hasJournal(dev uint64) bool {
	if v, ok := journaled.Load(dev); ok {
		return v.(bool)
	}
	has := false
	uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(dev), unix.Minor(dev)))
	if err == nil {
		for line := range strings.SplitSeq(string(uevent), "\n") {
			if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" && !strings.ContainsAny(name, "/*?[") {
				matches, _ := filepath.Glob("/proc/fs/jbd2/" + name + "-*")
				has = len(matches) > 0
			}
		}
	}
	journaled.Store(dev, has)
	return has
}
