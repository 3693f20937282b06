package session

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrReplyTooLarge means a reply exceeded the size allowed for it.
var ErrReplyTooLarge = errors.New("reply is larger than allowed")

// SetFinal durably records how the session is to be finished, before that
// work is done, so that work already done (a notification) is never
// repeated after a failure, a restart or a power loss: the upload is
// checkpointed durably together with the record. The caller holds the
// request lock.
func (s *Session) SetFinal(info FinalInfo) error {
	if !s.State().Complete() {
		return ErrIncomplete
	}
	s.update(func(st *State) { st.Final = &info })
	if s.State().DataDiscarded {
		return s.persist(true)
	}
	return s.syncComplete()
}

// Final returns the recorded outcome of finishing the session, if any.
func (s *Session) Final() (FinalInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Final == nil {
		return FinalInfo{}, false
	}
	return *s.st.Final, true
}

// Touch records activity on the session, such as a reply download, so
// the reaper leaves it alone.
func (s *Session) Touch() { s.touch() }

// StoreReply stores r as the session's reply, durably. It reads at most
// max+1 bytes and fails with ErrReplyTooLarge, storing nothing, when there
// are more than max. It returns the reply's size. The caller holds the
// request lock.
func (s *Session) StoreReply(r io.Reader, max int64) (int64, error) {
	tmp := filepath.Join(s.dir, replyFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("creating reply file: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, max+1))
	if err == nil && n > max {
		err = ErrReplyTooLarge
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.ReplyPath())
	}
	if err != nil {
		_ = os.Remove(tmp)
		if errors.Is(err, ErrReplyTooLarge) {
			return n, err
		}
		return n, fmt.Errorf("storing reply: %w", err)
	}
	return n, nil
}

// AdoptReply takes the file the server application wrote at ReplyPath
// (notification by reference) as the session's reply: it fsyncs it, or
// creates it empty when the application wrote none. A reply larger than
// max fails with ErrReplyTooLarge and is deleted. It returns the reply's
// size. The caller holds the request lock.
func (s *Session) AdoptReply(max int64) (int64, error) {
	f, err := os.OpenFile(s.ReplyPath(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening reply file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("opening reply file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("reply %s is not a regular file", s.ReplyPath())
	}
	if fi.Size() > max {
		_ = os.Remove(s.ReplyPath())
		return fi.Size(), ErrReplyTooLarge
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("syncing reply file: %w", err)
	}
	return fi.Size(), nil
}

// DiscardReply deletes a stored reply, if any.
func (s *Session) DiscardReply() error {
	if err := os.Remove(s.ReplyPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting reply: %w", err)
	}
	return nil
}

// OpenReply opens the session's stored reply for reading. The file stays
// readable even if the session is removed while it is open.
func (s *Session) OpenReply() (*os.File, error) {
	if s.Gone() {
		return nil, ErrNotFound
	}
	return os.Open(s.ReplyPath())
}

// DiscardData deletes the data file of a finished session, whose upload
// was delivered (and committed, if asked), to free its space early. The
// session still reports every byte received. The caller holds the request
// lock.
func (s *Session) DiscardData() error {
	st := s.State()
	if !st.Finished {
		return errors.New("discarding the data of an unfinished session")
	}
	if st.DataDiscarded {
		return nil
	}
	s.update(func(st *State) { st.DataDiscarded = true })
	// Durable first: a state that still expects the data file, after the
	// file is gone, would make recovery reopen a delivered upload.
	if err := s.persist(true); err != nil {
		return err
	}
	if err := os.Remove(s.DataPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting data file: %w", err)
	}
	return nil
}
