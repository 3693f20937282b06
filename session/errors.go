package session

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	// ErrInvalidName means the file system refuses a name of the
	// destination (too long, or in an encoding it does not accept).
	ErrInvalidName = errors.New("destination name is not accepted by the file system")
	// ErrBodyIncomplete means the request body ended before the declared
	// length; the bytes that did arrive are kept.
	ErrBodyIncomplete = errors.New("request body ended early")
	// ErrLimitReached means the session's owner already has as many
	// sessions as allowed.
	ErrLimitReached = errors.New("too many open sessions for this user")
	// ErrStoreClosed means the store was shut down.
	ErrStoreClosed = errors.New("session store is closed")
	// ErrStorageUnavailable means the storage could not be reached or
	// answered with a failure that may pass (an object store that is down
	// or slow); nothing acknowledged is lost, and the request can be
	// retried later.
	ErrStorageUnavailable = errors.New("storage is unavailable")
	// ErrDataLost means the storage no longer holds what the session had
	// stored there (an object store expired an unfinished multipart
	// upload, say); the session cannot continue, and its client must
	// start over.
	ErrDataLost = errors.New("storage lost the session's data")
	// ErrInterrupted means a newer request for the same session took it
	// over while this one was reading its body; the bytes that arrived
	// are kept.
	ErrInterrupted = errors.New("a newer request took the session over")
)

// IsDiskFull reports whether err means the file system is out of space or
// the quota is exhausted.
func IsDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, errQuota)
}

// destinationError classifies an error of path resolution or creation
// inside an upload root: a path that leads through something that is not
// a directory or out of the root is ErrInvalidDestination, and a name the
// file system refuses is ErrInvalidName. Other errors are returned as
// they are.
func destinationError(err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ELOOP),
		errors.As(err, &pe) && pe.Err.Error() == "path escapes from parent",
		errors.As(err, &le) && le.Err.Error() == "path escapes from parent":
		return fmt.Errorf("%w: %v", ErrInvalidDestination, err)
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EILSEQ), errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	return err
}
