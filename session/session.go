package session

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Session is one upload session, as anybody may look at it: its id and a
// copy of its state. What changes a session is done through a [Lease],
// which holds the session's request lock.
type Session struct {
	store *Store
	id    protocol.SessionID
	lock  *requestLock

	// mu guards st, gone and dirty, which readers such as List and the
	// reaper use without the request lock. Writers hold both.
	mu    sync.Mutex
	st    State
	gone  bool
	dirty bool // st has changes that are on disk nowhere

	// persistMu serialises writes of the state, from requests and from a
	// checkpoint running in the background, and guards the fields below.
	persistMu sync.Mutex
	stateFile bool // the state is in its own file
	durable   bool // that file was written durably
	inJournal bool // the state is an S line of the journal

	// The fields below are used only under the request lock.
	data           Data
	hasher         hash.Hash
	hashed         int64         // bytes covered by hasher
	completed      bool          // complete() ran in this process
	hasReply       bool          // a reply file may exist
	placedStraight time.Duration // how long placing took, when Write placed the upload

	// appending is the data a fragment is being appended to, while it
	// is, so that State reports the bytes as they arrive.
	appending      atomic.Pointer[appendProgress]
	checkpointTime time.Time
	checkpoint     chan struct{} // closed when the running checkpoint ends
}

func newSession(store *Store, st *State) *Session {
	return &Session{
		store:          store,
		id:             st.ID,
		lock:           newRequestLock(),
		st:             *st,
		checkpointTime: store.now(),
	}
}

// ID returns the session's id.
func (s *Session) ID() protocol.SessionID { return s.id }

// appendProgress is a fragment being appended to data.
type appendProgress struct {
	data Data
}

// State returns a copy of the session's metadata. While a fragment is
// being written, Received counts the bytes stored so far.
func (s *Session) State() State {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.HashState = nil
	st.Data = nil
	if p := s.appending.Load(); p != nil {
		st.Received = max(st.Received, p.data.Size())
	}
	return st
}

// Gone reports whether the session was removed (closed, cancelled or
// reaped).
func (s *Session) Gone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// Finished returns the cached final Ack data and whether the session is
// finished.
func (s *Session) Finished() (FinalInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.st.Finished || s.st.Final == nil {
		return FinalInfo{}, false
	}
	return *s.st.Final, true
}

// Digest returns the SHA-256 of the complete upload, or nil before it is
// complete or when it was not computed.
func (s *Session) Digest() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.st.Digest...)
}

// ReplyPath returns the absolute path where the session's reply is stored.
func (s *Session) ReplyPath() string { return s.store.replyPathOf(s.id) }

// replyPathOf returns the path of the reply file of session id.
func (s *Store) replyPathOf(id protocol.SessionID) string {
	return filepath.Join(s.activeDir, id.Bare()+replySuffix)
}

// statePath returns the path of the session's state file.
func (s *Session) statePath() string {
	return filepath.Join(s.store.activeDir, s.id.Bare()+stateSuffix)
}

// update applies f to the state under mu. The caller holds the request
// lock.
func (s *Session) update(f func(st *State)) {
	s.mu.Lock()
	f(&s.st)
	s.dirty = true
	s.mu.Unlock()
}

// Touch records activity on the session, such as a reply download, so
// the reaper leaves it alone. It needs no lease.
func (s *Session) Touch() { s.touch() }

// touch records activity on the session.
func (s *Session) touch() {
	now := s.store.now()
	s.update(func(st *State) { st.LastActivity = now })
}

// persist writes the current state to the session's state file. With
// durable, the write survives a power loss before persist returns. Once a
// state file was written durably, every later write fsyncs the new file
// before it replaces the old one, so that a power loss can never leave a
// state older than one that was durable, nor an empty file.
func (s *Session) persist(durable bool) error {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	return s.persistLocked(durable)
}

// persistLocked is persist for a caller that holds persistMu.
func (s *Session) persistLocked(durable bool) error {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return ErrNotFound
	}
	st := s.st
	s.dirty = false
	s.mu.Unlock()
	b, err := seal(s.store.key, &st)
	if err == nil {
		err = writeStateFile(s.statePath(), b, durable || s.durable, durable, s.store.fsync)
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	s.stateFile = true
	s.durable = s.durable || durable
	if s.inJournal {
		s.inJournal = false
		if err := s.store.journal.forget(s.id); err != nil {
			s.store.logger.Warn("writing the session journal", zap.Error(err))
		}
	}
	return nil
}

// journalState records the state as an S line of the store's journal
// instead of a state file, for a session that has none: one append
// instead of a file to create and later delete.
func (s *Session) journalState() error {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	if s.stateFile {
		return s.persistLocked(false)
	}
	return s.journalStateLocked()
}

// journalStateLocked is journalState for a caller that holds persistMu.
func (s *Session) journalStateLocked() error {
	s.mu.Lock()
	st := s.st
	s.dirty = false
	s.mu.Unlock()
	b, err := seal(s.store.key, &st)
	if err == nil {
		err = s.store.journal.putState(s.id, b)
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("recording session state: %w", err)
	}
	s.inJournal = true
	return nil
}

// journalRecord writes the storage record of a session whose state is an
// S line of the journal as an R line: one short append instead of the
// whole state. A session with a state file persists it instead.
func (s *Session) journalRecord(rec json.RawMessage) error {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	if s.stateFile {
		return s.persistLocked(false)
	}
	if !s.inJournal {
		return s.journalStateLocked()
	}
	s.mu.Lock()
	total := s.st.Total
	s.mu.Unlock()
	if err := s.store.journal.putRecord(s.id, sealRecord(s.store.key, s.id, total, rec)); err != nil {
		return fmt.Errorf("recording session state: %w", err)
	}
	return nil
}

// save writes the state where it is kept: its state file, or the
// journal. A session kept nowhere yet gets a state file once it knows its
// upload's length; before that it holds nothing a restart would need
// (Revive makes it again), and save does nothing.
func (s *Session) save() error {
	s.persistMu.Lock()
	stateFile, inJournal := s.stateFile, s.inJournal
	s.persistMu.Unlock()
	switch {
	case stateFile:
		return s.persist(false)
	case inJournal:
		return s.journalState()
	case s.State().Total >= 0:
		return s.persist(false)
	}
	return nil
}

// Record implements [Journal] for the session's Data: the record is
// written at once, where the state is kept (see save).
func (s *Session) Record(rec json.RawMessage, durable bool) error {
	s.update(func(st *State) { st.Data = append(json.RawMessage(nil), rec...) })
	if durable {
		return s.persist(true)
	}
	return s.journalRecord(rec)
}

// openData returns the session's Data, opening it on first use. The
// caller holds the request lock.
func (s *Session) openData() (Data, error) {
	if s.data != nil {
		return s.data, nil
	}
	s.mu.Lock()
	ref := DataRef{ID: s.id, Total: s.st.Total, Dest: s.st.Destination(), Record: s.st.Data, Journal: s, ReadBack: s.st.Hash}
	s.mu.Unlock()
	d, err := s.store.storage.Data(context.Background(), ref)
	if err != nil {
		return nil, err
	}
	s.data = d
	return d, nil
}

// catchUpHash makes the running SHA-256 cover exactly the first upTo bytes
// held, reading the part not hashed yet (after a restart) once. The caller
// holds the request lock.
func (s *Session) catchUpHash(upTo int64) error {
	if s.hasher == nil {
		h := sha256.New()
		s.mu.Lock()
		hs, off := s.st.HashState, s.st.HashOffset
		s.mu.Unlock()
		s.hashed = 0
		if len(hs) > 0 && off <= upTo {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(hs); err == nil {
				s.hashed = off
			} else {
				h.Reset()
			}
		}
		s.hasher = h
	}
	if s.hashed == upTo {
		return nil
	}
	if s.hashed > upTo {
		s.hasher = nil
		return s.catchUpHash(upTo)
	}
	data, err := s.openData()
	if err != nil {
		return err
	}
	dr, ok := data.(DataReader)
	if !ok {
		return errors.New("the upload's digest was not computed while it was written, and its storage cannot read it back")
	}
	rc, err := dr.NewReader(s.hashed)
	if err != nil {
		return fmt.Errorf("reading the upload to resume its hash: %w", err)
	}
	defer rc.Close()
	n, err := io.Copy(s.hasher, io.LimitReader(rc, upTo-s.hashed))
	s.hashed += n
	if err == nil && s.hashed != upTo {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		s.hasher = nil
		return fmt.Errorf("reading the upload to resume its hash: %w", err)
	}
	return nil
}

// hashState returns the running hash's state if it covers exactly n
// bytes, else nil. The caller holds the request lock.
func (s *Session) hashState(n int64) ([]byte, error) {
	if s.hasher == nil || s.hashed != n {
		return nil, nil
	}
	hs, err := s.hasher.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("saving hash state: %w", err)
	}
	return hs, nil
}

// maybeCheckpoint starts a checkpoint in the background when enough data
// or time has passed since the last one. The caller holds the request
// lock.
func (s *Session) maybeCheckpoint() {
	st := s.State()
	if st.Received-st.HashOffset < s.store.opts.CheckpointBytes &&
		s.store.now().Sub(s.checkpointTime) < s.store.opts.CheckpointInterval {
		return
	}
	if s.checkpoint != nil {
		select {
		case <-s.checkpoint:
		default:
			return // one is running; the next write tries again
		}
	}
	offset := st.Received
	hs, err := s.hashState(offset)
	if err != nil {
		s.store.logger.Warn("checkpointing upload", zap.String("session_id", s.id.Wire()), zap.Error(err))
	}
	data := s.data
	done := make(chan struct{})
	s.checkpoint = done
	s.checkpointTime = s.store.now()
	go func() {
		defer close(done)
		if err := s.takeCheckpoint(data, offset, hs); err != nil && !errors.Is(err, ErrNotFound) {
			s.store.logger.Warn("checkpointing upload", zap.String("session_id", s.id.Wire()), zap.Error(err))
		}
	}()
}

// waitCheckpoint waits for a checkpoint running in the background. The
// caller holds the request lock.
func (s *Session) waitCheckpoint() {
	if s.checkpoint != nil {
		<-s.checkpoint
		s.checkpoint = nil
	}
}

// takeCheckpoint syncs the held bytes and then durably records that the
// first offset of them are durable, with the hash state over exactly
// those bytes and the running boot id (see the package documentation). It
// runs off the request path: the fragments that follow are acknowledged
// while it syncs, and it records only the offset that was held when it
// started.
func (s *Session) takeCheckpoint(data Data, offset int64, hs []byte) error {
	if err := data.Sync(); err != nil {
		return err
	}
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.update(func(st *State) {
		if offset >= st.HashOffset {
			st.HashOffset = offset
			st.HashState = hs
		}
		st.BootID = s.store.bootID
	})
	return s.persistLocked(true)
}

// checkpointNow takes a checkpoint of every byte held, on the request
// path. The caller holds the request lock.
func (s *Session) checkpointNow() error {
	s.waitCheckpoint()
	data, err := s.openData()
	if err != nil {
		return err
	}
	offset := s.State().Received
	hs, err := s.hashState(offset)
	if err != nil {
		return err
	}
	s.checkpointTime = s.store.now()
	return s.takeCheckpoint(data, offset, hs)
}
