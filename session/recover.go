package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// recover loads every session found in the store: the state files in the
// active directory and the states recorded in the journal. A session
// whose state cannot be read (one interrupted while its first state was
// written, one whose unsynced state was lost with the power, or a file
// the store did not write) is deleted: its client gets
// BG_E_SESSION_NOT_FOUND and starts over. Files of closed sessions, and
// files that belong to no session, are deleted too.
func (s *Store) recover() error {
	if err := s.migrate(); err != nil {
		return err
	}
	entries, err := os.ReadDir(s.activeDir)
	if err != nil {
		return fmt.Errorf("reading session directory: %w", err)
	}
	files := make(map[protocol.SessionID][]string)
	for _, e := range entries {
		name := e.Name()
		full := filepath.Join(s.activeDir, name)
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(full) // an interrupted write
			continue
		}
		guid, _, _ := strings.Cut(name, ".")
		id, err := protocol.ParseSessionID("{" + guid + "}")
		if err != nil || id.Bare() != guid || e.IsDir() {
			s.logger.Warn("ignoring unexpected entry in session directory", zap.String("name", name))
			continue
		}
		files[id] = append(files[id], full)
	}
	discard := func(id protocol.SessionID, why error) error {
		if why != nil {
			s.logger.Warn("discarding unreadable session", zap.String("session_id", id.Wire()), zap.Error(why))
		}
		_ = s.journal.forget(id)
		for _, f := range files[id] {
			if err := removeFile(f); err != nil {
				return fmt.Errorf("removing files of session %s: %w", id, err)
			}
		}
		return nil
	}
	for id := range files {
		if s.journal.closed(id) {
			// Closed or cancelled, but the process died while deleting.
			if err := discard(id, nil); err != nil {
				return err
			}
			continue
		}
		st, err := readStateFile(s.key, filepath.Join(s.activeDir, id.Bare()+stateSuffix))
		fromFile := err == nil
		if errors.Is(err, fs.ErrNotExist) {
			b, ok := s.journal.stateOf(id)
			if !ok {
				// Files of a session whose state reached the disk
				// nowhere: nothing of it was ever acknowledged as kept.
				if err := discard(id, nil); err != nil {
					return err
				}
				continue
			}
			st, err = unseal(s.key, b)
			if err == nil {
				err = s.applyRecord(st)
			}
		}
		if err == nil && st.ID != id {
			err = fmt.Errorf("state names session %s", st.ID)
		}
		var sess *Session
		if err == nil {
			sess, err = s.recoverOne(st, fromFile, !fromFile)
		}
		if err != nil {
			if err := discard(id, err); err != nil {
				return err
			}
			continue
		}
		s.adopt(sess)
	}
	// Sessions whose only trace is the journal: uploads placed straight
	// from their only fragment, and finished uploads whose data went.
	for _, id := range s.journal.sealedStates() {
		if _, ok := s.sessions[id]; ok || files[id] != nil {
			continue
		}
		b, _ := s.journal.stateOf(id)
		st, err := unseal(s.key, b)
		if err == nil && st.ID != id {
			err = fmt.Errorf("state names session %s", st.ID)
		}
		if err == nil {
			err = s.applyRecord(st)
		}
		var sess *Session
		if err == nil {
			sess, err = s.recoverOne(st, false, true)
		}
		if err != nil {
			_ = discard(id, err)
			continue
		}
		s.adopt(sess)
	}
	if len(s.sessions) > 0 {
		s.logger.Info("recovered upload sessions", zap.String("dir", s.dir), zap.Int("sessions", len(s.sessions)))
	}
	return nil
}

// applyRecord applies the journal's R line of a session, if any, to the
// state of its S line.
func (s *Store) applyRecord(st *State) error {
	line, ok := s.journal.recordOf(st.ID)
	if !ok {
		return nil
	}
	total, rec, err := unsealRecord(s.key, st.ID, line)
	if err != nil {
		return err
	}
	st.Data = rec
	if st.Total < 0 {
		st.Total = total
	}
	return nil
}

// adopt registers a recovered session.
func (s *Store) adopt(sess *Session) {
	s.sessions[sess.id] = sess
	s.owners[sess.st.Owner()]++
}

// recoverOne reconciles a loaded state with the bytes its storage holds.
func (s *Store) recoverOne(st *State, stateFile, inJournal bool) (*Session, error) {
	sess := newSession(s, st)
	sess.stateFile, sess.inJournal = stateFile, inJournal
	// A state file that was loaded may well have been written durably:
	// every later write fsyncs it before it replaces it.
	sess.durable = stateFile
	if _, err := os.Lstat(sess.ReplyPath()); err == nil {
		sess.hasReply = true
	}
	data, err := s.storage.Data(context.Background(), DataRef{ID: st.ID, Total: st.Total, Dest: st.Destination(), Record: st.Data, Journal: sess, ReadBack: st.Hash})
	if err != nil {
		return nil, err
	}
	sess.data = data
	size := data.Size()
	// A placed upload is complete and durable (placing syncs it first),
	// and it is the destination itself: it must never be truncated or
	// written again.
	placed := false
	if st.Final == nil || st.Final.Commit {
		if st.Committed || len(st.Data) > 0 || (st.Total < 0 && size > 0) || (st.Total >= 0 && size == st.Total) {
			placed = data.Placed(st.Destination())
		}
	}
	switch {
	case placed && size == 0:
		// Placed straight from its fragment, or its data discarded.
		size = st.Total
		st.DataDiscarded = true
	case st.DataDiscarded && st.Finished && size == 0:
		// The data was deleted on purpose after the session finished.
		size = st.Total
	}
	if st.Total >= 0 && size > st.Total {
		return nil, fmt.Errorf("holds %d bytes, more than the upload's %d", size, st.Total)
	}
	if size < st.HashOffset {
		// The checkpoint promised more durable bytes than are held: the
		// data was damaged outside our control. Its hash state is
		// useless; the hash is recomputed from the bytes that remain.
		s.logger.Warn("data shorter than its checkpoint",
			zap.String("session_id", st.ID.Wire()), zap.Int64("size", size), zap.Int64("checkpoint", st.HashOffset))
		st.HashOffset, st.HashState = 0, nil
		st.Digest = nil
	}
	rewrite := false
	if placed {
		if st.Total < 0 {
			// Placed only once complete, so the size is the total even
			// when the state never learnt it.
			st.Total = size
		}
		st.Committed = true
		if st.Final == nil {
			// An upload is placed only once placing it was decided: at
			// once without a notification, else after the outcome was
			// recorded.
			st.Final = &FinalInfo{Commit: true}
		}
	}
	if st.Final != nil && !st.Finished && (!st.Final.Commit || st.Committed) {
		// The outcome was recorded and everything it asked for is done.
		st.Finished = true
	}
	if st.BootID != "" && s.bootID != "" && st.BootID != s.bootID && !placed {
		// The machine restarted since these bytes were written, so only
		// the checkpointed prefix is known to have reached the disk.
		if size > st.HashOffset {
			s.logger.Info("rewinding session after a restart of the machine",
				zap.String("session_id", st.ID.Wire()), zap.Int64("from", size), zap.Int64("to", st.HashOffset))
			if err := data.Truncate(st.HashOffset); err != nil {
				return nil, err
			}
			size = st.HashOffset
		}
		st.BootID = s.bootID
		rewrite = stateFile
	}
	if size < st.Total || st.Total < 0 {
		// Not complete: a digest or final Ack from damaged data would
		// be wrong.
		st.Digest, st.Finished, st.Final, st.Committed = nil, false, nil, false
	}
	st.Received = size
	sess.st = *st
	if rewrite {
		if err := sess.persist(true); err != nil {
			return nil, err
		}
	}
	return sess, nil
}

// migrate moves the sessions of an earlier version, one directory per
// session (active/<guid>/state.json, data, reply), to the flat layout,
// sealing their states with the store's key. A session that cannot be
// migrated is deleted: its client starts over.
func (s *Store) migrate() error {
	entries, err := os.ReadDir(s.activeDir)
	if err != nil {
		return fmt.Errorf("reading session directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.activeDir, e.Name())
		id, err := protocol.ParseSessionID("{" + e.Name() + "}")
		if err != nil || id.Bare() != e.Name() {
			continue // not a session's; recover reports it
		}
		if err = s.migrateOne(dir, id); err != nil {
			s.logger.Warn("discarding a session of an earlier version", zap.String("session_id", id.Wire()), zap.Error(err))
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing %s: %w", dir, err)
		}
	}
	// An earlier version's trash of closed sessions.
	if err := os.RemoveAll(filepath.Join(s.dir, "trash")); err != nil {
		s.logger.Warn("emptying the trash of removed sessions", zap.Error(err))
	}
	return nil
}

// migrateOne moves one session of the earlier layout.
func (s *Store) migrateOne(dir string, id protocol.SessionID) error {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if st.Version != 1 || st.ID != id {
		return fmt.Errorf("unexpected state version %d or id %s", st.Version, st.ID)
	}
	st.Version = stateVersion
	if err := st.validate(); err != nil {
		return err
	}
	for _, m := range [][2]string{{"data", dataSuffix}, {"reply", replySuffix}} {
		err := os.Rename(filepath.Join(dir, m[0]), filepath.Join(s.activeDir, id.Bare()+m[1]))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	sealed, err := seal(s.key, &st)
	if err != nil {
		return err
	}
	return writeStateFile(filepath.Join(s.activeDir, id.Bare()+stateSuffix), sealed, true, true, s.fsync)
}
