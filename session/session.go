package session

import (
	"context"
	"crypto/sha256"
	"encoding"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// File names inside a session directory.
const (
	stateFile = "state.json"
	dataFile  = "data"
	replyFile = "reply"
)

// Session is one upload session. Requests that change it hold its lock
// ([Session.Lock]) for their whole duration, so a client's retry that
// overlaps a request still in flight waits instead of interleaving writes.
type Session struct {
	store *Store
	id    protocol.SessionID
	dir   string

	// lock serialises requests; it is a channel so waiting can be
	// abandoned when the request's context ends.
	lock chan struct{}

	// mu guards st and gone, which readers such as List and the reaper use
	// without taking the request lock. Writers hold both.
	mu    sync.Mutex
	st    State
	gone  bool
	dirty bool // st has changes state.json does not

	// The fields below are used only under the request lock.
	hasher         hash.Hash
	hashed         int64 // bytes covered by hasher
	completed      bool  // complete() ran in this process
	checkpointTime time.Time
}

func newSession(store *Store, st *State) *Session {
	return &Session{
		store:          store,
		id:             st.ID,
		dir:            filepath.Join(store.sessionsDir, st.ID.Bare()),
		lock:           make(chan struct{}, 1),
		st:             *st,
		checkpointTime: store.now(),
	}
}

// ID returns the session's id.
func (s *Session) ID() protocol.SessionID { return s.id }

// Lock acquires the session's request lock, waiting until it is free or
// ctx ends.
func (s *Session) Lock(ctx context.Context) error {
	select {
	case s.lock <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for session %s: %w", s.id, ctx.Err())
	}
}

// tryLock acquires the request lock only if it is free.
func (s *Session) tryLock() bool {
	select {
	case s.lock <- struct{}{}:
		return true
	default:
		return false
	}
}

// Unlock releases the request lock.
func (s *Session) Unlock() { <-s.lock }

// State returns a copy of the session's metadata. It is safe to call
// without the request lock.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.HashState = nil
	return st
}

// Gone reports whether the session was removed (closed, cancelled or
// reaped) while the caller waited for it.
func (s *Session) Gone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

// DataPath returns the absolute path of the session's data file. It exists
// once the first byte arrived (or the empty upload completed).
func (s *Session) DataPath() string { return filepath.Join(s.dir, dataFile) }

// ReplyPath returns the absolute path where the session's reply is stored.
func (s *Session) ReplyPath() string { return filepath.Join(s.dir, replyFile) }

// update applies f to the state under mu. The caller holds the request
// lock.
func (s *Session) update(f func(st *State)) {
	s.mu.Lock()
	f(&s.st)
	s.dirty = true
	s.mu.Unlock()
}

// persist writes the current state to disk. The caller holds the request
// lock.
func (s *Session) persist(durable bool) error {
	s.mu.Lock()
	st := s.st
	s.dirty = false
	s.mu.Unlock()
	if err := writeState(s.dir, &st, durable); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	return nil
}

// touch records activity on the session.
func (s *Session) touch() {
	now := s.store.now()
	s.update(func(st *State) { st.LastActivity = now })
}

// WriteResult reports what a fragment did.
type WriteResult struct {
	// Action is the decision-table row the fragment fell into.
	Action protocol.FragmentAction
	// Written is the number of new bytes stored.
	Written int64
	// Received is the number of contiguous bytes held afterwards.
	Received int64
	// Total is the upload's length.
	Total int64
	// Complete is true when every byte is held.
	Complete bool
}

// Write applies a Fragment whose range [protocol.ParseContentRange]
// accepted. The first fragment fixes the upload's total length; a later
// one with another total fails with ErrTotalChanged and nothing is
// written. Of an overlapping fragment only the bytes after those already
// held are written; a fragment entirely held or starting after a gap
// writes nothing, and its body is left unread.
//
// body must yield exactly rng.Len() bytes. If it ends early, the bytes
// that arrived are kept and the error wraps ErrBodyIncomplete. A write
// failure (such as a full disk) keeps the bytes of the fragment written
// before it and drops the failed buffer's, so the data file's size is
// always the number of bytes held. The caller holds the request lock.
func (s *Session) Write(rng protocol.Range, body io.Reader) (WriteResult, error) {
	st := s.State()
	if s.Gone() {
		return WriteResult{}, ErrNotFound
	}
	if st.Total >= 0 && st.Total != rng.Total {
		return WriteResult{Received: st.Received, Total: st.Total}, fmt.Errorf("%w: fragment says %d, session has %d", ErrTotalChanged, rng.Total, st.Total)
	}
	if st.Total < 0 {
		s.update(func(st *State) { st.Total = rng.Total })
		// A single-fragment upload keeps its total in memory like the
		// rest of its completion (see complete); others persist it now.
		if rng.First != 0 || !rng.IsFinal() {
			if err := s.persist(false); err != nil {
				return WriteResult{Received: st.Received, Total: rng.Total}, err
			}
		}
	}
	s.touch()
	res := WriteResult{Received: st.Received, Total: rng.Total}
	action, skip := protocol.ClassifyFragment(st.Received, rng)
	res.Action = action
	if action == protocol.Append {
		n, err := s.appendTail(body, skip, rng.Last+1-st.Received)
		res.Written = n
		res.Received = st.Received + n
		if err != nil {
			return res, err
		}
	}
	res.Complete = res.Received == res.Total
	if res.Complete && !s.completed {
		if err := s.complete(); err != nil {
			return res, err
		}
		s.completed = true
	}
	return res, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// appendTail skips the first skip bytes of body and appends the next n to
// the data file.
func (s *Session) appendTail(body io.Reader, skip, n int64) (int64, error) {
	if skip > 0 {
		if k, err := io.CopyN(io.Discard, body, skip); err != nil {
			return 0, fmt.Errorf("%w: %d of %d already-held bytes read: %v", ErrBodyIncomplete, k, skip, err)
		}
	}
	f, err := os.OpenFile(s.DataPath(), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening data file: %w", err)
	}
	defer f.Close()
	st := s.State()
	start := st.Received
	hashing := st.Hash
	if hashing {
		if err := s.catchUpHash(start); err != nil {
			return 0, err
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var written int64
	var werr error
	for written < n {
		want := int64(len(buf))
		if rem := n - written; rem < want {
			want = rem
		}
		k, rerr := io.ReadFull(body, buf[:want])
		if k > 0 {
			if _, err := f.WriteAt(buf[:k], start+written); err != nil {
				// Keep the invariant "bytes held = file size": drop
				// whatever part of this buffer reached the file.
				_ = f.Truncate(start + written)
				werr = fmt.Errorf("writing data file: %w", err)
				break
			}
			written += int64(k)
			if hashing {
				s.hasher.Write(buf[:k])
				s.hashed = start + written
			}
			s.update(func(st *State) { st.Received = start + written })
		}
		if rerr != nil {
			if written < n {
				werr = fmt.Errorf("%w: %d of %d bytes: %v", ErrBodyIncomplete, written, n, rerr)
			}
			break
		}
	}
	if written > 0 {
		s.touch()
		if cerr := s.maybeCheckpoint(f); werr == nil && cerr != nil {
			werr = cerr
		}
	}
	return written, werr
}

// catchUpHash makes the running SHA-256 cover exactly the first upTo bytes
// of the data file, reading the part not hashed yet (after a restart) once.
func (s *Session) catchUpHash(upTo int64) error {
	if s.hasher == nil {
		h := sha256.New()
		st := s.State()
		s.hashed = 0
		if len(st.HashState) > 0 && st.HashOffset <= upTo {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.HashState); err == nil {
				s.hashed = st.HashOffset
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
		return fmt.Errorf("hash covers %d bytes, more than the %d held", s.hashed, upTo)
	}
	f, err := os.Open(s.DataPath())
	if err != nil {
		return fmt.Errorf("reading data file to resume its hash: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(s.hasher, io.NewSectionReader(f, s.hashed, upTo-s.hashed)); err != nil {
		return fmt.Errorf("reading data file to resume its hash: %w", err)
	}
	s.hashed = upTo
	return nil
}

// maybeCheckpoint takes a checkpoint when enough data or time has passed
// since the last one.
func (s *Session) maybeCheckpoint(f *os.File) error {
	st := s.State()
	if st.Received-st.HashOffset < s.store.opts.CheckpointBytes &&
		s.store.now().Sub(s.checkpointTime) < s.store.opts.CheckpointInterval {
		return nil
	}
	return s.checkpoint(f)
}

// checkpoint fsyncs the data file and durably records its length, hash
// state and the boot id (see the package documentation).
func (s *Session) checkpoint(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing data file: %w", err)
	}
	offset := s.State().Received
	var hs []byte
	if s.hasher != nil && s.hashed == offset {
		var err error
		if hs, err = s.hasher.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return fmt.Errorf("saving hash state: %w", err)
		}
	}
	s.update(func(st *State) {
		st.HashOffset = offset
		st.HashState = hs
		st.BootID = s.store.bootID
	})
	s.checkpointTime = s.store.now()
	return s.persist(true)
}

// complete makes sure a complete upload has a data file (an empty upload
// has none yet) and finishes its digest if one is computed.
//
// Nothing is written to the state file here: the checkpoint stays where it was, and the
// digest is recorded with the next state update. What needs the upload
// on disk makes it durable itself: Commit fsyncs the data before linking
// it into place, and SetFinal takes a durable checkpoint before recording
// a notification's outcome. A small upload thus costs no fsync beyond the
// commit's.
func (s *Session) complete() error {
	st := s.State()
	if st.Finished || st.DataDiscarded {
		return nil
	}
	// An empty upload has no data file yet.
	f, err := os.OpenFile(s.DataPath(), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening data file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("creating data file: %w", err)
	}
	if st.Hash && len(st.Digest) == 0 {
		if _, err := s.computeDigest(st.Total); err != nil {
			return err
		}
	}
	// The digest reaches state.json with the next update (the commit's or
	// the notification's); after a crash before that it is recomputed.
	return nil
}

// EnsureDigest returns the SHA-256 of a complete upload, computing it from
// the data file if it was not computed while the fragments were written.
// The caller holds the request lock.
func (s *Session) EnsureDigest() ([]byte, error) {
	st := s.State()
	if len(st.Digest) > 0 {
		return st.Digest, nil
	}
	if !st.Complete() || st.DataDiscarded {
		return nil, ErrIncomplete
	}
	sum, err := s.computeDigest(st.Total)
	if err != nil {
		return nil, err
	}
	return sum, s.persist(false)
}

// computeDigest brings the running SHA-256 up to the upload's total size,
// reading from the data file what it does not cover yet, and records the
// sum in memory.
func (s *Session) computeDigest(total int64) ([]byte, error) {
	if err := s.catchUpHash(total); err != nil {
		return nil, err
	}
	sum := s.hasher.Sum(nil)
	s.update(func(st *State) { st.Digest = sum })
	return sum, nil
}

// syncComplete takes a durable checkpoint of a complete upload, so that
// neither a restart nor a power loss can rewind it. The checkpoint carries
// the hash state only if the running hash already covers the upload; the
// digest itself, once computed, is in the state anyway.
func (s *Session) syncComplete() error {
	if s.State().DataDiscarded {
		return nil
	}
	f, err := os.OpenFile(s.DataPath(), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening data file: %w", err)
	}
	defer f.Close()
	return s.checkpoint(f)
}

// Digest returns the SHA-256 of the complete upload, or nil before it is
// complete.
func (s *Session) Digest() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.st.Digest...)
}

// Finish records the final Ack of the session, so that a repeated final
// fragment gets the same answer without the work being done again. It is
// kept in memory (and written at the next state update or a clean
// shutdown): what it stands for is on disk already, a commit by its link
// and a notification's outcome by SetFinal, and after a crash finishing
// again finds them and is idempotent. The caller holds the request lock.
func (s *Session) Finish(info FinalInfo) error {
	if !s.State().Complete() {
		return ErrIncomplete
	}
	s.update(func(st *State) {
		st.Finished = true
		st.Final = &info
	})
	return nil
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
