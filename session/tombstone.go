package session

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// tombstones remembers recently closed and cancelled session ids in memory
// and in an append-only log, one "<guid> <unix seconds>" line per id. The
// log is not fsynced: a tombstone lost with the power only turns a
// repeated Close-Session into BG_E_SESSION_NOT_FOUND.
type tombstones struct {
	path string
	max  int

	mu    sync.Mutex
	byID  map[protocol.SessionID]time.Time
	order []tombstone // in insertion order, oldest first
	log   *os.File
	lines int // lines in the log, live or not
}

type tombstone struct {
	id protocol.SessionID
	at time.Time
}

// openTombstones loads the log, drops entries older than expiry and
// rewrites it compactly.
func openTombstones(path string, max int, expiry time.Time) (*tombstones, error) {
	t := &tombstones{path: path, max: max, byID: make(map[protocol.SessionID]time.Time)}
	f, err := os.Open(path)
	switch {
	case err == nil:
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			guid, secs, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			id, err := protocol.ParseSessionID("{" + guid + "}")
			if err != nil {
				continue
			}
			n, err := strconv.ParseInt(secs, 10, 64)
			if err != nil {
				continue
			}
			if at := time.Unix(n, 0); at.After(expiry) {
				t.insert(id, at)
			}
		}
		err = sc.Err()
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := t.rewrite(); err != nil {
		return nil, err
	}
	return t, nil
}

// insert records an id in memory, forgetting the oldest beyond max.
func (t *tombstones) insert(id protocol.SessionID, at time.Time) {
	if _, ok := t.byID[id]; ok {
		return
	}
	t.order = append(t.order, tombstone{id, at})
	t.byID[id] = at
	for len(t.byID) > t.max && len(t.order) > 0 {
		old := t.order[0]
		t.order = t.order[1:]
		if t.byID[old.id].Equal(old.at) {
			delete(t.byID, old.id)
		}
	}
}

func (t *tombstones) has(id protocol.SessionID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byID[id]
	return ok
}

// add remembers an id and appends it to the log.
func (t *tombstones) add(id protocol.SessionID, at time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.insert(id, at)
	if t.log == nil {
		return errors.New("tombstone log is closed")
	}
	t.lines++
	_, err := fmt.Fprintf(t.log, "%s %d\n", id.Bare(), at.Unix())
	return err
}

// expire forgets ids recorded before cutoff and compacts the log when most
// of its lines are dead.
func (t *tombstones) expire(cutoff time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := 0
	for ; i < len(t.order) && !t.order[i].at.After(cutoff); i++ {
		if at, ok := t.byID[t.order[i].id]; ok && !at.After(cutoff) {
			delete(t.byID, t.order[i].id)
		}
	}
	t.order = t.order[i:]
	if t.lines > 1024 && t.lines > 2*len(t.byID) {
		return t.rewriteLocked()
	}
	return nil
}

func (t *tombstones) rewrite() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rewriteLocked()
}

// rewriteLocked replaces the log with the live entries and reopens it for
// appending.
func (t *tombstones) rewriteLocked() error {
	if t.log != nil {
		_ = t.log.Close()
		t.log = nil
	}
	tmp := t.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("rewriting %s: %w", t.path, err)
	}
	w := bufio.NewWriter(f)
	n := 0
	for _, e := range t.order {
		if at, ok := t.byID[e.id]; ok && at.Equal(e.at) {
			fmt.Fprintf(w, "%s %d\n", e.id.Bare(), e.at.Unix())
			n++
		}
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, t.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rewriting %s: %w", t.path, err)
	}
	t.log, err = os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s: %w", filepath.Base(t.path), err)
	}
	t.lines = n
	return nil
}

func (t *tombstones) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.log == nil {
		return nil
	}
	err := t.log.Close()
	t.log = nil
	return err
}
