package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Lease is a session held by one request: it owns the session's request
// lock until Release, and every method that changes the session is on
// it, so the rule "hold the lock to change a session" is kept by the
// types. A Lease is used by one goroutine.
type Lease struct {
	s           *Session
	interrupt   func()
	interrupted atomic.Bool
	released    bool
}

// Session returns the leased session.
func (l *Lease) Session() *Session { return l.s }

// ID returns the session's id.
func (l *Lease) ID() protocol.SessionID { return l.s.id }

// State returns a copy of the session's state.
func (l *Lease) State() State { return l.s.State() }

// Interrupted reports whether a newer request asked this one to stop
// reading its body. The interrupt function may then have run even though
// the body was read to its end, so the connection it disturbed should not
// be used again.
func (l *Lease) Interrupted() bool { return l.interrupted.Load() }

// Release gives the session back. Calling it again does nothing.
func (l *Lease) Release() {
	if l.released {
		return
	}
	l.released = true
	l.s.lock.unlock()
}

// WriteOptions tune how a fragment is written.
type WriteOptions struct {
	// Place says the upload will be placed at its destination without a
	// notification. A fragment that carries the whole upload may then be
	// written straight next to the destination and placed there, where
	// the storage can ([StreamPlacer]); the session holds nothing after.
	// Overwrite is then the allow-overwrite setting that placing uses.
	Place     bool
	Overwrite bool
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
// body must yield exactly rng.Len() bytes. If it ends early, or a newer
// request for the session interrupts this one while it reads (the error
// then also wraps ErrInterrupted), the bytes that arrived are kept and the
// error wraps ErrBodyIncomplete. A write failure (such as a full disk)
// keeps the bytes of the fragment written before it.
func (l *Lease) Write(rng protocol.Range, body io.Reader, opts WriteOptions) (WriteResult, error) {
	s := l.s
	st := s.State()
	if s.Gone() {
		return WriteResult{}, ErrNotFound
	}
	if st.Total >= 0 && st.Total != rng.Total {
		return WriteResult{Received: st.Received, Total: st.Total}, fmt.Errorf("%w: fragment says %d, session has %d", ErrTotalChanged, rng.Total, st.Total)
	}
	if st.Total < 0 {
		s.update(func(st *State) { st.Total = rng.Total })
	}
	s.touch()
	res := WriteResult{Received: st.Received, Total: rng.Total}
	action, skip := protocol.ClassifyFragment(st.Received, rng)
	res.Action = action
	var err error
	if action == protocol.Append {
		done := s.lock.interruptible(l.interruptFunc())
		res.Written, err = l.append(rng, body, skip, opts)
		done()
		res.Received = st.Received + res.Written
		if err != nil && l.interrupted.Load() {
			err = fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
	}
	res.Complete = res.Received == res.Total
	if err == nil && res.Complete && !s.completed {
		if err = s.complete(); err == nil {
			s.completed = true
		}
	}
	if !res.Complete && res.Written > 0 {
		// The session now holds bytes a restart must find. Its state is
		// written once here; later fragments only change what the data
		// itself records, and checkpoints.
		s.persistMu.Lock()
		first := !s.stateFile
		s.persistMu.Unlock()
		if first {
			if perr := s.persist(false); err == nil && perr != nil {
				err = perr
			}
		}
		s.maybeCheckpoint()
	}
	return res, err
}

// interruptFunc returns the function that interrupts this lease's body
// read, recording that it did.
func (l *Lease) interruptFunc() func() {
	if l.interrupt == nil {
		return nil
	}
	return func() {
		l.interrupted.Store(true)
		l.interrupt()
	}
}

// append skips the first skip bytes of body and appends the next n, those
// after the bytes held, to the session's data, or places a whole upload
// straight from its only fragment.
func (l *Lease) append(rng protocol.Range, body io.Reader, skip int64, opts WriteOptions) (int64, error) {
	s := l.s
	if skip > 0 {
		if k, err := io.CopyN(io.Discard, body, skip); err != nil {
			return 0, fmt.Errorf("%w: %d of %d already-held bytes read: %v", ErrBodyIncomplete, k, skip, err)
		}
	}
	st := s.State()
	start := st.Received
	n := rng.Last + 1 - start
	if st.Hash {
		if err := s.catchUpHash(start); err != nil {
			return 0, err
		}
		body = io.TeeReader(body, hashCounter{s})
	}
	written, err := l.placeStraight(rng, body, opts)
	if errors.Is(err, ErrNotStaged) {
		data, derr := s.openData()
		if derr != nil {
			return 0, derr
		}
		s.appending.Store(&appendProgress{data: data})
		written, err = data.Append(body, n)
		s.appending.Store(nil)
	}
	if written > 0 {
		s.update(func(st *State) { st.Received = start + written })
	}
	if st.Hash && s.hashed != start+written {
		// Bytes were read that were not written: recompute the hash
		// from the held bytes when it is next needed.
		s.hasher = nil
	}
	return written, err
}

// hashCounter feeds a session's running hash and counts what it covers.
type hashCounter struct{ s *Session }

func (h hashCounter) Write(p []byte) (int, error) {
	h.s.hasher.Write(p)
	h.s.hashed += int64(len(p))
	return len(p), nil
}

// placeStraight writes a fragment that carries the whole upload straight
// next to its destination and places it there, when the storage can and
// the upload is to be placed without a notification. It fails with
// ErrNotStaged, having read nothing, when it does not apply. When placing
// fails (the destination exists, say), or the body ends early, the bytes
// written are kept in the session as usual, so that the commit, or the
// client's resumption, proceeds as for any other upload.
func (l *Lease) placeStraight(rng protocol.Range, body io.Reader, opts WriteOptions) (int64, error) {
	s := l.s
	sp, ok := s.store.storage.(StreamPlacer)
	st := s.State()
	if !ok || !opts.Place || rng.First != 0 || !rng.IsFinal() || st.Received != 0 || rng.Total == 0 {
		return 0, ErrNotStaged
	}
	staged, err := sp.Stage(context.Background(), st.Destination(), body, rng.Total)
	if staged == nil {
		// Nothing was read: hold the upload in the session, and let the
		// commit report what is wrong with the destination, if anything.
		if !errors.Is(err, ErrNotStaged) {
			s.store.logger.Debug("staging an upload next to its destination", zap.String("session_id", s.id.Wire()), zap.Error(err))
		}
		return 0, ErrNotStaged
	}
	defer staged.Close()
	if err == nil {
		// Record the placement before it happens, so that a restart
		// recognises the upload at the destination (see recover.go).
		s.update(func(st *State) {
			st.Received = st.Total
			st.Final = &FinalInfo{Commit: true}
			st.Data = staged.Record()
		})
		err = s.journalRecord(staged.Record())
		start := time.Now()
		if err == nil {
			err = staged.Place(opts.Overwrite)
		}
		if err == nil {
			s.placedStraight = max(time.Since(start), 1)
			s.data = nil
			s.update(func(st *State) {
				st.Committed = true
				st.DataDiscarded = true
			})
			return staged.Size(), nil
		}
		s.update(func(st *State) {
			st.Received = 0
			st.Final = nil
			st.Data = nil
		})
		if !errors.Is(err, ErrDestinationExists) {
			s.store.logger.Warn("placing an upload straight from its fragment; keeping it in the session",
				zap.String("session_id", s.id.Wire()), zap.Error(err))
		}
		err = nil
	}
	// Keep what was written, as an ordinary session does.
	data, derr := s.openData()
	if derr != nil {
		return 0, derr
	}
	n, aerr := data.Append(staged.NewReader(), staged.Size())
	if aerr != nil {
		return n, aerr
	}
	if s.State().Total > 0 && n > 0 {
		// The journal's state may still name the staged file, which was
		// never placed; record that the bytes are in the session now.
		s.update(func(st *State) { st.Received = n })
		if jerr := s.journalState(); jerr != nil {
			return n, jerr
		}
	}
	return n, err
}

// complete makes sure a complete upload has its bytes where the storage
// keeps them (an empty upload has none yet) and finishes its digest if
// one is computed. Nothing is written to the state here: what needs the
// upload on disk makes it durable itself, placing syncs the bytes, and
// recording a notification's outcome takes a durable checkpoint first.
func (s *Session) complete() error {
	st := s.State()
	if st.Hash && len(st.Digest) == 0 && s.hasher != nil && s.hashed == st.Total {
		s.update(func(st *State) { st.Digest = s.hasher.Sum(nil) })
		st.Digest = s.Digest()
	}
	if st.Finished || st.DataDiscarded {
		return nil
	}
	if st.Total == 0 {
		data, err := s.openData()
		if err != nil {
			return err
		}
		if _, err := data.Append(eofReader{}, 0); err != nil {
			return err
		}
	}
	if st.Hash && len(st.Digest) == 0 {
		if _, err := s.computeDigest(st.Total); err != nil {
			return err
		}
	}
	return nil
}

// eofReader is an empty reader.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// computeDigest brings the running SHA-256 up to the upload's total size,
// reading what it does not cover yet, and records the sum in memory.
func (s *Session) computeDigest(total int64) ([]byte, error) {
	if err := s.catchUpHash(total); err != nil {
		return nil, err
	}
	sum := s.hasher.Sum(nil)
	s.update(func(st *State) { st.Digest = sum })
	return sum, nil
}

// Remove deletes the leased session for Close-Session, Cancel-Session or
// the admin API, and remembers its id so that a repeated request
// succeeds. A placed destination file is not touched. The lease stays
// held; Release it as usual.
func (l *Lease) Remove(reason RemoveReason) (State, error) {
	return l.s.store.remove(l.s, reason, true)
}
