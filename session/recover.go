package session

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// recover loads every session found in the sessions directory. A directory
// whose state cannot be read (a session interrupted while being created, or
// one whose unsynced state was lost with the power) is deleted: its client
// gets BG_E_SESSION_NOT_FOUND and starts over.
func (s *Store) recover() error {
	entries, err := os.ReadDir(s.sessionsDir)
	if err != nil {
		return fmt.Errorf("reading session directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		id, err := protocol.ParseSessionID("{" + name + "}")
		if err != nil || !e.IsDir() || id.Bare() != name {
			s.logger.Warn("ignoring unexpected entry in session directory", zap.String("name", name))
			continue
		}
		dir := filepath.Join(s.sessionsDir, name)
		if s.tombstones.has(id) {
			// Closed or cancelled, but the process died while deleting it.
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("removing closed session %s: %w", id, err)
			}
			continue
		}
		sess, err := s.recoverOne(dir, id)
		if err != nil {
			s.logger.Warn("discarding unreadable session", zap.String("session_id", id.Wire()), zap.Error(err))
			if rerr := os.RemoveAll(dir); rerr != nil {
				return fmt.Errorf("removing unreadable session %s: %w", id, rerr)
			}
			continue
		}
		s.sessions[id] = sess
		s.owners[sess.st.Owner()]++
	}
	if len(s.sessions) > 0 {
		s.logger.Info("recovered upload sessions", zap.String("dir", s.dir), zap.Int("sessions", len(s.sessions)))
	}
	return nil
}

// recoverOne loads one session and reconciles its state with its data
// file.
func (s *Store) recoverOne(dir string, id protocol.SessionID) (*Session, error) {
	_ = os.Remove(filepath.Join(dir, stateFile+".tmp"))
	st, err := readState(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	if st.ID != id {
		return nil, fmt.Errorf("state names session %s", st.ID)
	}
	var size int64
	linked := false
	fi, err := os.Stat(filepath.Join(dir, dataFile))
	switch {
	case err == nil:
		size = fi.Size()
		// A data file with another link was committed by hard link, which
		// happens only after it was fsynced: it is complete and durable,
		// and it is the destination file itself, so it must never be
		// truncated or written again.
		linked = linkCount(fi) > 1
		if mt := fi.ModTime(); mt.After(st.LastActivity) {
			st.LastActivity = mt
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, err
	}
	if st.DataDiscarded && st.Finished && size == 0 {
		// The data was deleted on purpose after the session finished.
		size = st.Total
	}
	if st.Total >= 0 && size > st.Total {
		return nil, fmt.Errorf("data file holds %d bytes, more than the upload's %d", size, st.Total)
	}
	if size < st.HashOffset {
		// The checkpoint promised more durable bytes than the file has:
		// the data file was damaged outside our control. Its hash state
		// is useless; the hash is recomputed from the bytes that remain.
		s.logger.Warn("data file shorter than its checkpoint",
			zap.String("session_id", id.Wire()), zap.Int64("size", size), zap.Int64("checkpoint", st.HashOffset))
		st.HashOffset, st.HashState = 0, nil
		st.Digest = nil
	}
	rewrite := false
	if linked && (st.Total < 0 || size == st.Total) {
		// Linked only once complete, so the size is the total even when
		// the state file never learnt it.
		st.Total = size
		st.Committed = true
	}
	if st.Final != nil && !st.Finished && (!st.Final.Commit || st.Committed) {
		// The outcome was recorded and everything it asked for is done.
		st.Finished = true
	}
	if st.BootID != "" && s.bootID != "" && st.BootID != s.bootID && !linked {
		// The machine restarted since these bytes were written, so only
		// the checkpointed prefix is known to have reached the disk.
		if size > st.HashOffset {
			s.logger.Info("rewinding session after a restart of the machine",
				zap.String("session_id", id.Wire()), zap.Int64("from", size), zap.Int64("to", st.HashOffset))
			if err := os.Truncate(filepath.Join(dir, dataFile), st.HashOffset); err != nil {
				return nil, fmt.Errorf("truncating data file: %w", err)
			}
			size = st.HashOffset
		}
		st.BootID = s.bootID
		rewrite = true
	}
	if size < st.Total || st.Total < 0 {
		// Not complete: a digest or final Ack from a damaged file would
		// be wrong.
		st.Digest, st.Finished, st.Final, st.Committed = nil, false, nil, false
	}
	st.Received = size
	if rewrite {
		if err := writeState(dir, st, true); err != nil {
			return nil, err
		}
	}
	cleanTemp(dir)
	return newSession(s, st), nil
}

// cleanTemp removes temporary files an interrupted write left in a
// session directory.
func cleanTemp(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
