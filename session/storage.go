package session

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Destination is where a finished upload is placed: Path, a slash
// separated path as returned by [protocol.CleanRemotePath], inside Root.
// For the local file system Root is an absolute directory; for an object
// store it is a key prefix.
type Destination struct {
	Root string
	Path string
}

// String returns the destination as one path.
func (d Destination) String() string {
	return filepath.Join(d.Root, filepath.FromSlash(d.Path))
}

// Storage holds the bytes of uploads in progress and places finished
// uploads at their destinations. It is the seam between the session state
// machine, which decides what is received, settled and removed, and the
// place the bytes live: the local file system ([LocalStorage], the
// default) or an object store. A Storage is safe for concurrent use.
//
// The core interface is what every storage can do. What only some can do
// is named by optional interfaces, discovered with a type assertion:
// [DataFile] (the bytes are one local file, which a notification by
// reference can name), [DataReader] (the bytes can be read back, for a
// notification by value or a digest not computed while writing) and
// [StreamPlacer] (an upload that arrives in one fragment is written
// straight next to its destination and placed from there, with nothing
// held in between). A storage that lacks one simply does not offer that
// feature; see each interface for what happens instead.
type Storage interface {
	// CheckDestination reports, at Create-Session and before any byte is
	// sent, whether an upload could be placed at dest. It fails with
	// ErrDestinationIsDir, ErrDestinationExists (only without
	// overwrite), ErrInvalidDestination or ErrInvalidName, wrapped, or
	// with another error when the check itself failed. [Data.Place]
	// decides again, atomically.
	CheckDestination(ctx context.Context, dest Destination, overwrite bool) error

	// Data returns the holder of one session's bytes. For a new session
	// ref.Record is nil and nothing is stored before the first Append. For
	// a recovered one, it is the last record the holder gave to its
	// journal, and Data finds the bytes the session held.
	Data(ctx context.Context, ref DataRef) (Data, error)
}

// DataRef names the bytes of one session for [Storage.Data].
type DataRef struct {
	// ID is the session's id.
	ID protocol.SessionID
	// Total is the upload's length, or -1 while no fragment announced it.
	// It is known before the first byte is appended.
	Total int64
	// Dest is where the upload is to be placed.
	Dest Destination
	// Record is the holder's last record (see Journal), or nil.
	Record json.RawMessage
	// Journal records the holder's progress in the session's state.
	Journal Journal
	// ReadBack is set when the bytes may be read back before they are
	// placed (through [DataReader]), as they are for a server application
	// notified of the upload. A storage that cannot read back what it
	// sent away, such as an object store's unfinished multipart upload,
	// keeps such bytes where it can.
	ReadBack bool
}

// Journal is how a [Data] records its own progress (such as the parts an
// object store already holds) in its session's state, so that a recovered
// session finds its bytes again.
type Journal interface {
	// Record stores rec as the holder's record in the session's state
	// and writes the state before it returns, so that a process crash
	// keeps it; with durable set, a power loss too.
	Record(rec json.RawMessage, durable bool) error
}

// Data holds the bytes of one session, always a prefix of the upload:
// bytes are only ever appended at its end. The session's request lock
// serialises every call except Size and Sync, which may run concurrently
// with Append.
type Data interface {
	// Size returns the number of bytes held. After a process crash
	// (kill -9) it is still every byte Append returned as appended; after
	// a power loss it is at least the size of the last Sync.
	Size() int64

	// Append reads n bytes from r and appends them. It returns the number
	// of bytes appended; on an error (r ending early, a full disk) the
	// bytes appended before it stay held, and none of a failed write.
	Append(r io.Reader, n int64) (int64, error)

	// Sync makes every byte held when it is called survive a power
	// loss.
	Sync() error

	// Truncate drops every byte held past n. Recovery uses it to rewind
	// an upload to its last checkpoint after a power loss.
	Truncate(n int64) error

	// Place makes the complete upload appear at dest, whole or not at
	// all, and durably, before it returns. Without overwrite, an existing
	// destination fails with ErrDestinationExists. Placing an upload that
	// is already in place (a Place that completed before a crash)
	// succeeds.
	Place(ctx context.Context, dest Destination, overwrite bool) error

	// Placed reports whether dest holds this very upload: a Place that
	// completed, perhaps before a crash. A destination holding a placed
	// upload must never be truncated or appended to.
	Placed(dest Destination) bool

	// Remove deletes every byte held. An upload already placed at its
	// destination stays there.
	Remove() error

	// Close releases what the holder keeps open; the bytes stay.
	Close() error
}

// DataFile is a [Data] whose bytes are one file on the local file
// system. A notification by reference names that file; with another
// storage it names the object instead.
type DataFile interface {
	// Path returns the file's absolute path. It exists once a byte was
	// appended.
	Path() string
}

// DataReader is a [Data] whose bytes can be read back before the upload
// is placed: for a notification by value, and for a digest that was not
// computed while the bytes were written. A storage without it can only
// notify by reference and compute digests while writing.
type DataReader interface {
	// NewReader returns the held bytes from offset off to the end.
	NewReader(off int64) (io.ReadCloser, error)
}

// StreamPlacer is a [Storage] that can write an upload that arrives in
// one fragment straight into a hidden object next to its destination, and
// place it from there. That saves writing the bytes into the session and
// deleting them after the commit. A storage without it holds every upload
// in its session until the commit.
type StreamPlacer interface {
	// Stage writes n bytes of r into a new object next to dest that
	// nobody can see, and makes them survive a power loss. The
	// returned Staged holds what was written even when err is not nil
	// (r ended early, the disk is full). Where it cannot stage (a file
	// system without unnamed temporary files), it fails with
	// ErrNotStaged before reading anything from r, and the upload is held
	// in its session as usual.
	Stage(ctx context.Context, dest Destination, r io.Reader, n int64) (Staged, error)
}

// ErrNotStaged is returned by [StreamPlacer.Stage] when it cannot stage an
// upload; nothing was read.
var ErrNotStaged = errors.New("the storage cannot stage this upload")

// Staged is an upload written by [StreamPlacer.Stage] and not placed yet.
type Staged interface {
	// Size returns the number of bytes written.
	Size() int64
	// Record returns what [Data.Placed] of a recovered session needs to
	// recognise the upload at its destination once placed.
	Record() json.RawMessage
	// Place makes the staged upload appear at dest, like [Data.Place].
	Place(overwrite bool) error
	// NewReader returns the staged bytes, so that they can be kept in the
	// session when placing fails or was not attempted.
	NewReader() io.Reader
	// Close discards the staged upload unless it was placed.
	Close() error
}
