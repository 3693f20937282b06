package session

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Sessions shared by several stores: the stores of a farm's nodes seal
// with one key (Options.Key), publish their sessions' sealed states where
// the others can read them (an object store), and a store adopts a
// session that another one can no longer serve. The store only provides
// the means; who owns a session, and where its state is published, is
// its caller's business.

// ErrMoved means another store took the session over: this one must no
// longer change its bytes.
var ErrMoved = errors.New("session moved to another node")

// Forgetter is a [Data] that can delete what it holds locally while
// leaving its storage's shared bytes (an object store's multipart upload)
// to the store that took the session over.
type Forgetter interface {
	Forget() error
}

// Sealed returns the sealed state of session id, as Adopt takes it, and
// the state itself (with its storage record and hash state).
func (s *Store) Sealed(id protocol.SessionID) ([]byte, State, error) {
	sess, err := s.Get(id)
	if err != nil {
		return nil, State{}, err
	}
	// The whole state, with the storage's record and the hash state,
	// which State leaves out.
	sess.mu.Lock()
	st := sess.st
	sess.mu.Unlock()
	if p := sess.appending.Load(); p != nil {
		st.Received = max(st.Received, p.data.Size())
	}
	b, err := seal(s.key, &st)
	if err != nil {
		return nil, State{}, err
	}
	return b, st, nil
}

// OpenSealed checks and decodes a sealed state, as Adopt would.
func (s *Store) OpenSealed(sealed []byte) (State, error) {
	st, err := unseal(s.key, sealed)
	if err != nil {
		return State{}, err
	}
	if err := st.validate(); err != nil {
		return State{}, err
	}
	return *st, nil
}

// Adopt makes the session a sealed state describes (published by another
// store with the same key) a session of this store, and returns it. The
// caller has made sure that the other store no longer serves it. The
// bytes held are what the storage finds from the state's record (parts in
// an object store); reply, if not nil, becomes the session's reply. A
// session this store holds already is returned as it is.
func (s *Store) Adopt(sealed []byte, reply io.Reader) (*Session, error) {
	st, err := unseal(s.key, sealed)
	if err != nil {
		return nil, fmt.Errorf("adopting a session: %w", err)
	}
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("adopting session %s: %w", st.ID, err)
	}
	if sess, err := s.Get(st.ID); err == nil {
		return sess, nil
	}
	if s.journal.closed(st.ID) {
		return nil, ErrClosed
	}
	// Bytes past the record's were the other store's alone; its boot is
	// not this machine's business.
	st.BootID = s.bootID
	if reply != nil {
		if err := s.writeReply(st.ID, reply); err != nil {
			return nil, err
		}
	}
	sess, err := s.recoverOne(st, false, false)
	if err != nil {
		_ = removeFile(s.replyPathOf(st.ID))
		return nil, fmt.Errorf("adopting session %s: %w", st.ID, err)
	}
	if err := sess.persist(true); err != nil {
		if d := sess.data; d != nil {
			_ = d.Close()
		}
		return nil, fmt.Errorf("adopting session %s: %w", st.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrStoreClosed
	}
	if other, ok := s.sessions[st.ID]; ok {
		return other, nil
	}
	s.adopt(sess)
	s.logger.Info("adopted session", zap.String("session_id", st.ID.Wire()), zap.Int64("received", sess.st.Received))
	return sess, nil
}

// writeReply stores r as the reply file of session id, durably.
func (s *Store) writeReply(id protocol.SessionID, r io.Reader) error {
	name := s.replyPathOf(id)
	f, err := os.OpenFile(name+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing the reply of session %s: %w", id, err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = s.fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name+".tmp", name)
	}
	if err != nil {
		_ = os.Remove(name + ".tmp")
		return fmt.Errorf("writing the reply of session %s: %w", id, err)
	}
	return nil
}

// Forget drops session id from this store without touching what another
// store now holds of it: the storage deletes only its local bytes
// ([Forgetter]), and no tombstone is written, since the session lives on
// elsewhere. The caller holds no lease of it.
func (s *Store) Forget(id protocol.SessionID) error {
	sess, err := s.Get(id)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrClosed) {
			return nil
		}
		return err
	}
	_, stateFile := s.detach(sess)
	var errs []error
	errs = append(errs, s.journal.forget(id))
	if d := sess.data; d != nil {
		if f, ok := d.(Forgetter); ok {
			errs = append(errs, f.Forget())
		}
		errs = append(errs, d.Close())
	}
	if err := removeFile(s.replyPathOf(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	if stateFile {
		errs = append(errs, removeFile(sess.statePath()))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("forgetting session %s: %w", id, err)
	}
	s.logger.Info("session moved to another node", zap.String("session_id", id.Wire()))
	return nil
}
