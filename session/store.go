package session

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Options configure a Store. The zero value of every field selects its
// default.
type Options struct {
	// Timeout is how long a session may stay idle before the reaper
	// deletes it. Default: 14 days (IIS's BITSSessionTimeout).
	Timeout time.Duration
	// TombstoneTTL is how long the ids of closed and cancelled sessions
	// are remembered, so a repeated Close-Session or Cancel-Session gets
	// 200. Default: the session timeout (as later changed by SetTimeout),
	// but at least one hour.
	TombstoneTTL time.Duration
	// MaxTombstones bounds the number of remembered ids; the oldest are
	// forgotten first. Default: 1,000,000.
	MaxTombstones int
	// CheckpointBytes and CheckpointInterval set how often a growing data
	// file is checkpointed (see the package documentation). Defaults:
	// 64 MiB and 30 seconds.
	CheckpointBytes    int64
	CheckpointInterval time.Duration
	// Logger receives the store's log lines. Default: a no-op logger.
	Logger *zap.Logger
	// OnRemove, if set, is called after a session was removed from disk,
	// with its last state and the reason.
	OnRemove func(st State, reason RemoveReason)
	// Now returns the current time. Default: time.Now. For tests.
	Now func() time.Time
}

// DefaultTimeout is the default idle timeout of a session.
const DefaultTimeout = 14 * 24 * time.Hour

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
	dir         string
	sessionsDir string
	opts        Options
	logger      *zap.Logger
	bootID      string
	now         func() time.Time
	timeout     atomic.Int64 // nanoseconds

	dirLock *os.File

	mu         sync.RWMutex
	sessions   map[protocol.SessionID]*Session
	owners     map[string]int // open sessions per State.Owner
	tombstones *tombstones
	closed     bool

	reaperStop chan struct{}
	reaperDone chan struct{}
	reaperKick chan struct{}

	trashDir    string
	janitor     chan string
	janitorDone chan struct{}
}

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
	s := &Store{
		dir:         filepath.Clean(dir),
		sessionsDir: filepath.Join(dir, "active"),
		opts:        opts,
		logger:      opts.Logger,
		bootID:      bootID(),
		now:         opts.Now,
		sessions:    make(map[protocol.SessionID]*Session),
		owners:      make(map[string]int),
		reaperStop:  make(chan struct{}),
		reaperDone:  make(chan struct{}),
		reaperKick:  make(chan struct{}, 1),
		trashDir:    filepath.Join(dir, "trash"),
		janitor:     make(chan string, 4096),
		janitorDone: make(chan struct{}),
	}
	s.timeout.Store(int64(opts.Timeout))
	if err := os.MkdirAll(s.sessionsDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating session directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(s.dir, "lock"))
	if err != nil {
		return nil, fmt.Errorf("locking session directory %s: %w", s.dir, err)
	}
	s.dirLock = lock
	ts, err := openTombstones(filepath.Join(s.dir, "closed.log"), opts.MaxTombstones, s.now().Add(-s.tombstoneTTL()))
	if err != nil {
		_ = s.dirLock.Close()
		return nil, err
	}
	s.tombstones = ts
	if err := s.recover(); err != nil {
		_ = ts.close()
		_ = s.dirLock.Close()
		return nil, err
	}
	// Whatever a previous process left in the trash goes now.
	if err := os.RemoveAll(s.trashDir); err != nil {
		s.logger.Warn("emptying the trash of removed sessions", zap.Error(err))
	}
	if err := os.MkdirAll(s.trashDir, 0o755); err != nil {
		_ = ts.close()
		_ = s.dirLock.Close()
		return nil, fmt.Errorf("creating session directory: %w", err)
	}
	go s.reaper()
	go s.janitorLoop()
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

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

// tombstoneTTL returns how long closed session ids are remembered.
func (s *Store) tombstoneTTL() time.Duration {
	if s.opts.TombstoneTTL > 0 {
		return s.opts.TombstoneTTL
	}
	return max(s.Timeout(), time.Hour)
}

// Timeout returns the idle timeout of the store's sessions.
func (s *Store) Timeout() time.Duration { return time.Duration(s.timeout.Load()) }

// Close stops the reaper and releases the directory. Sessions stay on disk
// for the next Open.
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
	close(s.janitor)
	<-s.janitorDone
	// Write what only memory knows (a total, a digest, the last activity),
	// so that a clean shutdown loses nothing a restart would have to redo.
	s.mu.RLock()
	for _, sess := range s.sessions {
		if !sess.tryLock() {
			continue
		}
		sess.mu.Lock()
		dirty := sess.dirty && !sess.gone
		sess.mu.Unlock()
		if dirty {
			if err := sess.persist(false); err != nil {
				s.logger.Warn("saving session state at shutdown", zap.String("session_id", sess.id.Wire()), zap.Error(err))
			}
		}
		sess.Unlock()
	}
	s.mu.RUnlock()
	err := s.tombstones.close()
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
	// without reading the file again.
	Digest bool
}

// Create makes a new session with a fresh random id.
func (s *Store) Create(info CreateInfo) (*Session, error) {
	if !filepath.IsAbs(info.Root) || info.Path == "" {
		return nil, fmt.Errorf("creating session: invalid destination %q in %q", info.Path, info.Root)
	}
	now := s.now()
	for attempt := 0; ; attempt++ {
		u, err := uuid.NewRandom()
		if err != nil {
			return nil, fmt.Errorf("creating session id: %w", err)
		}
		id := protocol.NewSessionID(u)
		dir := filepath.Join(s.sessionsDir, id.Bare())
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) && attempt < 3 {
				continue
			}
			return nil, fmt.Errorf("creating session directory: %w", err)
		}
		st := &State{
			ID: id, Root: info.Root, Path: info.Path, URL: info.URL,
			User: info.User, Client: info.Client, Hash: info.Digest,
			Created: now, LastActivity: now, Total: -1, BootID: s.bootID,
		}
		// Reserve the owner's slot first, so that concurrent creates
		// cannot overshoot the limit.
		owner := st.Owner()
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			_ = os.Remove(dir)
			return nil, ErrStoreClosed
		case info.MaxPerOwner > 0 && s.owners[owner] >= info.MaxPerOwner:
			s.mu.Unlock()
			_ = os.Remove(dir)
			return nil, ErrLimitReached
		}
		s.owners[owner]++
		s.mu.Unlock()
		if err := createState(dir, st); err != nil {
			_ = os.RemoveAll(dir)
			s.mu.Lock()
			s.releaseOwner(owner)
			s.mu.Unlock()
			return nil, err
		}
		sess := newSession(s, st)
		s.mu.Lock()
		s.sessions[id] = sess
		s.mu.Unlock()
		return sess, nil
	}
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
	if s.tombstones.has(id) {
		return nil, ErrClosed
	}
	return nil, ErrNotFound
}

// Acquire returns the session with the given id with its request lock
// held, waiting for the lock until ctx ends. It fails like Get, and also
// when the session was removed while waiting.
func (s *Store) Acquire(ctx context.Context, id protocol.SessionID) (*Session, error) {
	sess, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if err := sess.Lock(ctx); err != nil {
		return nil, err
	}
	if sess.Gone() {
		sess.Unlock()
		return s.Acquire(ctx, id)
	}
	return sess, nil
}

// Remove deletes a session for Close-Session or Cancel-Session: it waits
// for the session's lock, deletes every file of the session, fsyncs the
// sessions directory and remembers the id, so that a repeated request
// succeeds. A committed destination file is not touched. For an id that
// was already removed it returns ErrClosed; for an unknown id ErrNotFound.
func (s *Store) Remove(ctx context.Context, id protocol.SessionID, reason RemoveReason) (State, error) {
	sess, err := s.Acquire(ctx, id)
	if err != nil {
		return State{}, err
	}
	defer sess.Unlock()
	return s.remove(sess, reason, true)
}

// RemoveAcquired is Remove for a session whose request lock the caller
// already holds (from Acquire); the caller still unlocks it.
func (s *Store) RemoveAcquired(sess *Session, reason RemoveReason) (State, error) {
	return s.remove(sess, reason, true)
}

// remove deletes a session whose request lock the caller holds.
func (s *Store) remove(sess *Session, reason RemoveReason, tombstone bool) (State, error) {
	st := sess.State()
	// Forget the session first, so that nobody finds it half deleted.
	sess.mu.Lock()
	sess.gone = true
	sess.mu.Unlock()
	s.mu.Lock()
	if _, ok := s.sessions[sess.id]; ok {
		delete(s.sessions, sess.id)
		s.releaseOwner(st.Owner())
	}
	s.mu.Unlock()
	// Remember the id before deleting anything: a crash halfway through
	// the deletion then still answers a repeated Close or Cancel with
	// 200, and recovery finishes the deletion.
	if tombstone {
		if err := s.tombstones.add(sess.id, s.now()); err != nil {
			s.logger.Warn("recording closed session", zap.String("session_id", sess.id.Wire()), zap.Error(err))
		}
	}
	if reason == RemovedCancelled {
		// A cancelled upload is to be gone, every byte of it, before the
		// answer, power loss or not.
		if err := os.RemoveAll(sess.dir); err != nil {
			// What is left is deleted when the store next opens: the id
			// is recorded, or the state file is gone.
			return st, fmt.Errorf("removing session %s: %w", sess.id, err)
		}
		if err := syncDir(s.sessionsDir); err != nil {
			s.logger.Warn("syncing sessions directory", zap.Error(err))
		}
	} else if err := s.discard(sess.dir); err != nil {
		return st, fmt.Errorf("removing session %s: %w", sess.id, err)
	}
	if s.opts.OnRemove != nil {
		s.opts.OnRemove(st, reason)
	}
	return st, nil
}

// discard takes a session directory out of the store with one rename, and
// leaves deleting its files to the janitor, off the request path. What the
// janitor has not deleted when the process ends is deleted at the next
// Open.
func (s *Store) discard(dir string) error {
	trash := filepath.Join(s.trashDir, filepath.Base(dir))
	if err := os.Rename(dir, trash); err != nil {
		return os.RemoveAll(dir)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.closed {
		select {
		case s.janitor <- trash:
			return nil
		default:
			// The janitor is behind: delete it here.
		}
	}
	return os.RemoveAll(trash)
}

// janitorLoop deletes discarded session directories until the store is
// closed, then deletes what is left in the queue.
func (s *Store) janitorLoop() {
	defer close(s.janitorDone)
	for dir := range s.janitor {
		if err := os.RemoveAll(dir); err != nil {
			s.logger.Warn("deleting a removed session", zap.String("dir", dir), zap.Error(err))
		}
	}
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
