package session

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// replySuffix ends the name of a session's reply file.
const replySuffix = ".reply"

// ErrReplyTooLarge means a reply exceeded the size allowed for it.
var ErrReplyTooLarge = errors.New("reply is larger than allowed")

// storeReply stores r as the session's reply, durably. It reads at most
// max+1 bytes and fails with ErrReplyTooLarge, storing nothing, when
// there are more than max. It returns the reply's size. The caller holds
// the request lock.
func (s *Session) storeReply(r io.Reader, max int64) (int64, error) {
	tmp := s.ReplyPath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("creating reply file: %w", err)
	}
	s.hasReply = true
	n, err := io.Copy(f, io.LimitReader(r, max+1))
	if err == nil && n > max {
		err = ErrReplyTooLarge
	}
	if err == nil {
		err = s.store.fsync(f)
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

// adoptReply takes the file the server application wrote at ReplyPath
// (notification by reference) as the session's reply: it fsyncs it, or
// creates it empty when the application wrote none. A reply larger than
// max fails with ErrReplyTooLarge and is deleted. It returns the reply's
// size. The caller holds the request lock.
func (s *Session) adoptReply(max int64) (int64, error) {
	s.hasReply = true
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
	if err := s.store.fsync(f); err != nil {
		return 0, fmt.Errorf("syncing reply file: %w", err)
	}
	return fi.Size(), nil
}

// discardReply deletes a stored reply, if any.
func (s *Session) discardReply() error {
	if err := removeFile(s.ReplyPath()); err != nil {
		return fmt.Errorf("deleting reply: %w", err)
	}
	return nil
}

// OpenReply opens the session's stored reply for reading; it needs no
// lease. The file stays readable even if the session is removed while it
// is open. A session removed before, or whose reply is gone, fails with
// ErrNotFound.
func (s *Session) OpenReply() (*os.File, error) {
	if s.Gone() {
		return nil, ErrNotFound
	}
	f, err := os.Open(s.ReplyPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: reply of %s is gone", ErrNotFound, s.id)
	}
	return f, err
}
