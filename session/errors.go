package session

import (
	"errors"
	"syscall"
)

var (
	// ErrNotFound means the store holds no session with that id.
	ErrNotFound = errors.New("session not found")
	// ErrClosed means the session was closed or cancelled recently; a
	// repeated Close-Session or Cancel-Session for it succeeds.
	ErrClosed = errors.New("session already closed")
	// ErrTotalChanged means a fragment declared another total length than
	// the session's first fragment.
	ErrTotalChanged = errors.New("upload length differs from the session's")
	// ErrIncomplete means a commit was attempted before every byte arrived.
	ErrIncomplete = errors.New("upload is not complete")
	// ErrDestinationExists means the destination file exists and
	// overwriting is not allowed.
	ErrDestinationExists = errors.New("destination exists and overwriting is not allowed")
	// ErrDestinationIsDir means the destination names a directory.
	ErrDestinationIsDir = errors.New("destination is a directory")
	// ErrInvalidDestination means the destination cannot be created inside
	// the root: a parent is not a directory, or a link leads outside the
	// root.
	ErrInvalidDestination = errors.New("destination path cannot be used")
	// ErrBodyIncomplete means the request body ended before the declared
	// length; the bytes that did arrive are kept.
	ErrBodyIncomplete = errors.New("request body ended early")
	// ErrLimitReached means the session's owner already has as many
	// sessions as allowed.
	ErrLimitReached = errors.New("too many open sessions for this user")
	// ErrStoreClosed means the store was shut down.
	ErrStoreClosed = errors.New("session store is closed")
)

// IsDiskFull reports whether err means the file system is out of space or
// the quota is exhausted.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, errQuota)
}
