package session

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Options configure a Store. The zero value of every field selects its
// default.
type Options struct {
	// Storage holds the bytes of the sessions and places finished
	// uploads. Default: the local file system, with each session's bytes
	// in the store's directory ([LocalStorage]).
	Storage Storage
	// Timeout is how long a session may stay idle before the reaper
	// deletes it. Default: 14 days (IIS's BITSSessionTimeout).
	Timeout time.Duration
	// EmptyTimeout is how long a session that has received no byte may
	// stay idle before the reaper deletes it. Its client loses nothing:
	// a later packet for it gets BG_E_SESSION_NOT_FOUND, and the client
	// creates a new session and sends from byte 0, as it would have.
	// Default: DefaultEmptyTimeout, capped at Timeout.
	EmptyTimeout time.Duration
	// TombstoneTTL is how long the ids of closed and cancelled sessions
	// are remembered, so a repeated Close-Session or Cancel-Session gets
	// 200. Default: the session timeout (as later changed by SetTimeout),
	// but at least one hour.
	TombstoneTTL time.Duration
	// MaxTombstones bounds the number of remembered ids; the oldest are
	// forgotten first. Default: 1,000,000.
	MaxTombstones int
	// CheckpointBytes and CheckpointInterval set how often a growing
	// upload is checkpointed (see the package documentation). Defaults:
	// 64 MiB and 30 seconds.
	CheckpointBytes    int64
	CheckpointInterval time.Duration
	// StorageName names where Storage keeps the bytes (the caddymodule
	// package uses "local", or the kind of store and its bucket). It is
	// recorded in the directory, and Open refuses with ErrStorageMismatch
	// a directory that holds sessions of another storage, whose bytes the
	// given one would not find. Default: "local" when Storage is nil;
	// otherwise "", which neither checks nor records a name.
	StorageName string
	// Key, when set (32 bytes), seals session ids and states instead of
	// the directory's own key: stores that share sessions (see Adopt)
	// share it. Default: the key in the directory, made at first use.
	Key []byte
	// Logger receives the store's log lines. Default: a no-op logger.
	Logger *zap.Logger
	// OnRemove, if set, is called after a session was removed, with its
	// last state and the reason.
	OnRemove func(st State, reason RemoveReason)
	// Now returns the current time. Default: time.Now. For tests.
	Now func() time.Time

	// fsync syncs files and directories, writeBack writes a file's data
	// back, and syncsNewNames tells whether an fsync of a file commits its
	// new names; tests replace them.
	fsync         func(*os.File) error
	writeBack     func(*os.File) error
	syncsNewNames func(*os.File) bool
}

// Default timeouts.
const (
	// DefaultTimeout is the default idle timeout of a session.
	DefaultTimeout = 14 * 24 * time.Hour
	// DefaultEmptyTimeout is the default idle timeout of a session that
	// has received no byte. A Windows client sends its first fragment
	// right after Create-Session; a job suspended in between creates a
	// new session when it resumes, at the cost of one round trip.
	DefaultEmptyTimeout = 10 * time.Minute
)

// RemoveReason says why a session was removed.
type RemoveReason int

// Reasons for removing a session.
const (
	RemovedClosed RemoveReason = iota
	RemovedCancelled
	RemovedReaped
)

// String returns "closed", "cancelled" or "reaped".
func (r RemoveReason) String() string {
	switch r {
	case RemovedClosed:
		return "closed"
	case RemovedCancelled:
		return "cancelled"
	case RemovedReaped:
		return "reaped"
	}
	return "unknown"
}

// Store is the durable store of the sessions in one directory. It is safe
// for concurrent use. Only one Store, in one process, may use a directory
// at a time; Open enforces that with an advisory lock where the platform
// has one.
type Store struct {
	dir       string
	activeDir string
	opts      Options
	storage   Storage
	logger    *zap.Logger
	bootID    string
	key       []byte
	fsync     func(*os.File) error
	now       func() time.Time
	timeout   atomic.Int64 // nanoseconds
	emptyTTL  atomic.Int64 // nanoseconds; 0 for the default

	dirLock *os.File
	journal *journal

	mu       sync.RWMutex
	sessions map[protocol.SessionID]*Session
	owners   map[string]int // open sessions per State.Owner
	closed   bool

	reaperStop chan struct{}
	reaperDone chan struct{}
	reaperKick chan struct{}
}

// Names inside the store's directory.
const (
	activeName = "active"
	lockName   = "lock"
	keyName    = "key"
)

// Open opens (creating it if needed) the store in dir, which must be an
// absolute path, and recovers the sessions found there. It starts the
// reaper, which runs until Close.
func Open(dir string, opts Options) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("session directory %q is not absolute", dir)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxTombstones <= 0 {
		opts.MaxTombstones = 1_000_000
	}
	if opts.CheckpointBytes <= 0 {
		opts.CheckpointBytes = 64 << 20
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.fsync == nil {
		opts.fsync = (*os.File).Sync
	}
	dir = filepath.Clean(dir)
	s := &Store{
		dir:        dir,
		activeDir:  filepath.Join(dir, activeName),
		opts:       opts,
		logger:     opts.Logger,
		bootID:     bootID(),
		fsync:      opts.fsync,
		now:        opts.Now,
		sessions:   make(map[protocol.SessionID]*Session),
		owners:     make(map[string]int),
		reaperStop: make(chan struct{}),
		reaperDone: make(chan struct{}),
		reaperKick: make(chan struct{}, 1),
	}
	s.timeout.Store(int64(opts.Timeout))
	s.emptyTTL.Store(int64(opts.EmptyTimeout))
	if err := os.MkdirAll(s.activeDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating session directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("locking session directory %s: %w", dir, err)
	}
	s.dirLock = lock
	fail := func(err error) (*Store, error) {
		if s.journal != nil {
			_ = s.journal.close()
		}
		_ = s.dirLock.Close()
		return nil, err
	}
	if s.key, err = loadKey(filepath.Join(dir, keyName), s.fsync); err != nil {
		return fail(err)
	}
	if opts.Key != nil {
		if len(opts.Key) != 32 {
			return fail(fmt.Errorf("session key has %d bytes, want 32", len(opts.Key)))
		}
		s.key = opts.Key
	}
	s.storage = opts.Storage
	name := opts.StorageName
	if s.storage == nil && name == "" {
		name = defaultStorageName
	}
	if name != "" {
		if err := checkStorageName(dir, s.activeDir, name, s.fsync); err != nil {
			return fail(err)
		}
	}
	if s.storage == nil {
		ls := NewLocalStorage(s.activeDir)
		ls.sy.fsync = s.fsync
		if opts.syncsNewNames != nil {
			ls.sy.syncsNewNames = opts.syncsNewNames
		}
		if opts.writeBack != nil {
			ls.sy.writeBack = opts.writeBack
		}
		s.storage = ls
	}
	if s.journal, err = openJournal(dir, opts.MaxTombstones, s.now().Add(-s.tombstoneTTL())); err != nil {
		return fail(err)
	}
	if err := s.recover(); err != nil {
		return fail(err)
	}
	go s.reaper()
	return s, nil
}

// loadKey reads the store's key, creating it on first use. The key seals
// every state the store writes (see [State]), so that a state file the
// store did not write is refused.
func loadKey(name string, fsync func(*os.File) error) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("session store key %s is damaged: %d bytes", name, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading session store key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("creating session store key: %w", err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating session store key: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDirOf(name, fsync)
	}
	if err != nil {
		_ = os.Remove(name)
		return nil, fmt.Errorf("creating session store key: %w", err)
	}
	return key, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Storage returns the storage the store's sessions keep their bytes in.
func (s *Store) Storage() Storage { return s.storage }

// SetTimeout changes the idle timeout of the store's sessions. The reaper
// adapts its check interval to it.
func (s *Store) SetTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultTimeout
	}
	if time.Duration(s.timeout.Swap(int64(d))) != d {
		select {
		case s.reaperKick <- struct{}{}:
		default:
		}
	}
}

// Timeout returns the idle timeout of the store's sessions.
func (s *Store) Timeout() time.Duration { return time.Duration(s.timeout.Load()) }

// SetEmptyTimeout changes the idle timeout of sessions that have received
// no byte; 0 selects the default.
func (s *Store) SetEmptyTimeout(d time.Duration) {
	if time.Duration(s.emptyTTL.Swap(int64(d))) != d {
		select {
		case s.reaperKick <- struct{}{}:
		default:
		}
	}
}

// EmptyTimeout returns the idle timeout of sessions that have received
// no byte.
func (s *Store) EmptyTimeout() time.Duration {
	d := time.Duration(s.emptyTTL.Load())
	if d <= 0 {
		d = DefaultEmptyTimeout
	}
	return min(d, s.Timeout())
}

// tombstoneTTL returns how long closed session ids are remembered.
func (s *Store) tombstoneTTL() time.Duration {
	if s.opts.TombstoneTTL > 0 {
		return s.opts.TombstoneTTL
	}
	return max(s.Timeout(), time.Hour)
}

// Close stops the reaper and releases the directory. Sessions stay on disk
// for the next Open, with what only memory knew (a total, a digest, the
// last activity) written first, so that a clean shutdown loses nothing a
// restart would have to redo.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.reaperStop)
	<-s.reaperDone
	s.mu.RLock()
	for _, sess := range s.sessions {
		if !sess.lock.tryLock() {
			continue
		}
		sess.waitCheckpoint()
		sess.mu.Lock()
		dirty := sess.dirty && !sess.gone
		sess.mu.Unlock()
		if dirty {
			if err := sess.save(); err != nil {
				s.logger.Warn("saving session state at shutdown", zap.String("session_id", sess.id.Wire()), zap.Error(err))
			}
		}
		if sess.data != nil {
			_ = sess.data.Close()
		}
		sess.lock.unlock()
	}
	s.mu.RUnlock()
	err := s.journal.close()
	if cerr := s.dirLock.Close(); err == nil {
		err = cerr
	}
	return err
}

// CreateInfo describes a new session.
type CreateInfo struct {
	// Root is the absolute upload root and Path the destination relative
	// to it, slash separated, as returned by protocol.CleanRemotePath.
	Root string
	Path string
	// URL is the absolute URL of the upload.
	URL string
	// User and Client identify who created the session.
	User   string
	Client string
	// MaxPerOwner, when positive, is how many open sessions the owner (see
	// State.Owner) may have; Create fails with ErrLimitReached beyond it.
	MaxPerOwner int
	// Digest asks for the upload's SHA-256 to be computed while its
	// fragments are written, so that it is known when the upload completes
	// without reading it again.
	Digest bool
}

// Create makes a new session with a fresh id (see mintID). It writes
// nothing: a session that has received no byte is kept in memory only, and
// after a process crash Revive makes it again from its client's next
// packet.
func (s *Store) Create(info CreateInfo) (*Session, error) {
	if err := checkDestinationNames(info.Root, info.Path); err != nil {
		return nil, fmt.Errorf("creating session: %w", err)
	}
	now := s.now()
	for {
		id, err := s.mintID(info.Root, info.Path, info.User, now)
		if err != nil {
			return nil, err
		}
		if s.journal.closed(id) {
			continue
		}
		sess, err := s.register(s.newState(id, info, now), info.MaxPerOwner)
		if err == errTaken {
			continue
		}
		return sess, err
	}
}

// errTaken means an id is in use already.
var errTaken = errors.New("session id in use")

// newState returns the state of a new session.
func (s *Store) newState(id protocol.SessionID, info CreateInfo, now time.Time) *State {
	return &State{
		Version: stateVersion, ID: id, Root: info.Root, Path: info.Path, URL: info.URL,
		User: info.User, Client: info.Client, Hash: info.Digest,
		Created: now, LastActivity: now, Total: -1, BootID: s.bootID,
	}
}

// register adds a new session to the store, counting it against its
// owner's limit.
func (s *Store) register(st *State, maxPerOwner int) (*Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, ErrStoreClosed
	case s.sessions[st.ID] != nil:
		return nil, errTaken
	case maxPerOwner > 0 && s.owners[st.Owner()] >= maxPerOwner:
		return nil, ErrLimitReached
	}
	s.owners[st.Owner()]++
	sess := newSession(s, st)
	s.sessions[st.ID] = sess
	return sess, nil
}

// Get returns the session with the given id. It fails with ErrClosed for
// a recently closed or cancelled session and with ErrNotFound for any
// other unknown id.
func (s *Store) Get(id protocol.SessionID) (*Session, error) {
	s.mu.RLock()
	sess, ok := s.sessions[id]
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, ErrStoreClosed
	}
	if ok {
		return sess, nil
	}
	if s.journal.closed(id) {
		return nil, ErrClosed
	}
	return nil, ErrNotFound
}

// Acquire returns a lease on the session with the given id, waiting for
// its request lock until ctx ends. If another request still holds the
// session after TakeOverAfter, reading its body, that request is
// interrupted (see [Lease.Write]). interrupt, if not nil, is how this request is in turn
// interrupted by a newer one: it must make the body this request reads
// fail promptly. Acquire fails like Get, also when the session was
// removed while waiting.
func (s *Store) Acquire(ctx context.Context, id protocol.SessionID, interrupt func()) (*Lease, error) {
	return s.acquire(ctx, id, interrupt, true)
}

// acquire is Acquire, taking the session over from a request reading its
// body or not.
func (s *Store) acquire(ctx context.Context, id protocol.SessionID, interrupt func(), takeOver bool) (*Lease, error) {
	for {
		sess, err := s.Get(id)
		if err != nil {
			return nil, err
		}
		if err := sess.lock.lock(ctx, takeOver); err != nil {
			return nil, lockError(sess, err)
		}
		if !sess.Gone() {
			return &Lease{s: sess, interrupt: interrupt}, nil
		}
		sess.lock.unlock()
	}
}

// Remove deletes a session on behalf of an operator: it waits for the
// requests of the session in flight to finish, deletes every file of the
// session and remembers the id, so that a repeated Close-Session or
// Cancel-Session succeeds. A committed destination file is not touched.
// For an id that was already removed it returns ErrClosed; for an unknown
// id ErrNotFound. Clients' own Close-Session and Cancel-Session take a
// lease with Acquire and call [Lease.Remove].
func (s *Store) Remove(ctx context.Context, id protocol.SessionID, reason RemoveReason) (State, error) {
	l, err := s.acquire(ctx, id, nil, false)
	if err != nil {
		return State{}, err
	}
	defer l.Release()
	return l.Remove(reason)
}

// remove deletes a session whose request lock the caller holds. Its id
// is recorded first, so that a crash halfway through still answers a
// repeated Close or Cancel with 200, and the next Open finishes the
// deletion. A cancelled session's deletion is fsynced before remove
// returns: a cancelled upload is gone, every byte of it, power loss or
// not.
func (s *Store) remove(sess *Session, reason RemoveReason, tombstone bool) (State, error) {
	st, stateFile := s.detach(sess)
	var err error
	if tombstone {
		err = s.journal.addTombstone(sess.id, s.now())
	} else {
		err = s.journal.forget(sess.id)
	}
	if err != nil {
		s.logger.Warn("writing the session journal", zap.String("session_id", sess.id.Wire()), zap.Error(err))
	}
	var errs []error
	onDisk := stateFile || sess.hasReply
	if d := sess.data; d != nil && (!st.DataDiscarded || d.Size() > 0) {
		onDisk = true
		errs = append(errs, d.Remove(), d.Close())
	}
	if sess.hasReply {
		errs = append(errs, sess.discardReply())
	}
	if stateFile {
		errs = append(errs, removeFile(sess.statePath()))
	}
	if reason == RemovedCancelled && onDisk {
		errs = append(errs, syncDir(s.activeDir, s.fsync))
	}
	if err := errors.Join(errs...); err != nil {
		// What is left is deleted when the store next opens: the id is
		// recorded, or the state is gone.
		return st, fmt.Errorf("removing session %s: %w", sess.id, err)
	}
	if s.opts.OnRemove != nil {
		s.opts.OnRemove(st, reason)
	}
	return st, nil
}

// detach takes sess out of the store before its files are deleted: it
// waits for a running checkpoint, marks the session gone so that no state
// is written for it any more, and forgets it in memory. It returns the
// session's last state and whether it has a state file.
func (s *Store) detach(sess *Session) (State, bool) {
	sess.waitCheckpoint()
	st := sess.State()
	sess.persistMu.Lock()
	sess.mu.Lock()
	sess.gone = true
	sess.mu.Unlock()
	stateFile := sess.stateFile
	sess.persistMu.Unlock()
	s.mu.Lock()
	if _, ok := s.sessions[sess.id]; ok {
		delete(s.sessions, sess.id)
		s.releaseOwner(st.Owner())
	}
	s.mu.Unlock()
	return st, stateFile
}

// List returns the state of every session, oldest first.
func (s *Store) List() []State {
	s.mu.RLock()
	out := make([]State, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess.State())
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// releaseOwner gives back one session of an owner. The caller holds s.mu.
func (s *Store) releaseOwner(owner string) {
	if s.owners[owner] <= 1 {
		delete(s.owners, owner)
	} else {
		s.owners[owner]--
	}
}

// Owned returns the number of open sessions of an owner (see
// State.Owner).
func (s *Store) Owned(owner string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.owners[owner]
}

// Len returns the number of sessions in the store.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sessions)
}
