//go:build !linux

package session

import "os"

// writeBack is an fsync here: the system has no write-back without a
// metadata commit that this package uses.
func writeBack(f *os.File) error { return f.Sync() }

// syncsNewNames reports false: placing an upload here always fsyncs the
// directory as well.
func syncsNewNames(*os.File) bool { return false }
