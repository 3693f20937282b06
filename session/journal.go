package session

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// journal is the store's append-only log of what needs no file of its
// own, one line per event:
//
//	X <guid> <unix seconds>   a session closed or cancelled (a tombstone)
//	S <sealed state>          the state of a session that has no state file
//	R <guid> <sealed record>  its storage's record, newer than its S line
//	D <guid>                  a session whose S line no longer counts
//
// Tombstones let a repeated Close-Session or Cancel-Session get 200. S
// lines keep small uploads, which finish with their first fragment, from
// costing a state file each; an R line records what a storage needs to
// find a placed upload again, without writing the whole state anew. The log is not fsynced: a line lost with the
// power only turns a repeated Close-Session into BG_E_SESSION_NOT_FOUND,
// or makes a client whose final Ack was lost start over. It is rewritten
// compactly when the store opens and when most of its lines are dead.
type journal struct {
	path string
	max  int // tombstones remembered at most

	mu      sync.Mutex
	tombs   map[protocol.SessionID]time.Time
	order   []tombstone // in insertion order, oldest first
	states  map[protocol.SessionID][]byte
	records map[protocol.SessionID]string
	log     *os.File
	lines   int // lines in the log, live or not
}

type tombstone struct {
	id protocol.SessionID
	at time.Time
}

// Names of the journal, and of the log of closed sessions that an earlier
// version kept instead.
const (
	journalFile   = "journal.log"
	oldClosedFile = "closed.log"
)

// openJournal loads the journal in dir (and an earlier version's closed
// log), drops tombstones older than expiry and rewrites it compactly.
func openJournal(dir string, max int, expiry time.Time) (*journal, error) {
	j := &journal{
		path:    dir + string(os.PathSeparator) + journalFile,
		max:     max,
		tombs:   make(map[protocol.SessionID]time.Time),
		states:  make(map[protocol.SessionID][]byte),
		records: make(map[protocol.SessionID]string),
	}
	old := dir + string(os.PathSeparator) + oldClosedFile
	for _, name := range []string{old, j.path} {
		if err := j.load(name, expiry); err != nil {
			return nil, err
		}
	}
	if err := j.rewrite(); err != nil {
		return nil, err
	}
	if err := removeFile(old); err != nil {
		return nil, fmt.Errorf("removing %s: %w", old, err)
	}
	return j, nil
}

// load replays one log file; a missing file is empty. Lines it cannot
// read are skipped: a torn last line is the most a crash leaves.
func (j *journal) load(name string, expiry time.Time) error {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		kind, rest, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch kind {
		case "X":
			guid, secs, _ := strings.Cut(rest, " ")
			id, at, ok := parseTombstone(guid, secs)
			if !ok {
				continue
			}
			// Closed: its state no longer counts, even once the
			// tombstone itself has expired.
			delete(j.states, id)
			delete(j.records, id)
			if at.After(expiry) {
				j.insertTomb(id, at)
			}
		case "S":
			id, ok := sealedID(rest)
			if ok {
				j.states[id] = []byte(rest)
				delete(j.records, id)
			}
		case "R":
			guid, _, _ := strings.Cut(rest, " ")
			if id, err := protocol.ParseSessionID("{" + guid + "}"); err == nil {
				j.records[id] = rest
			}
		case "D":
			if id, err := protocol.ParseSessionID("{" + rest + "}"); err == nil {
				delete(j.states, id)
				delete(j.records, id)
			}
		default:
			// An earlier version's closed log: "<guid> <unix seconds>".
			id, at, ok := parseTombstone(kind, rest)
			if ok {
				delete(j.states, id)
				delete(j.records, id)
			}
			if ok && at.After(expiry) {
				j.insertTomb(id, at)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return nil
}

func parseTombstone(guid, secs string) (protocol.SessionID, time.Time, bool) {
	id, err := protocol.ParseSessionID("{" + guid + "}")
	if err != nil {
		return "", time.Time{}, false
	}
	n, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return id, time.Unix(n, 0), true
}

// sealedID returns the session id inside a sealed state without checking
// it; the store checks the seal when it loads the state.
func sealedID(sealed string) (protocol.SessionID, bool) {
	_, rest, ok := strings.Cut(sealed, `"id":"`)
	if !ok {
		return "", false
	}
	raw, _, ok := strings.Cut(rest, `"`)
	if !ok {
		return "", false
	}
	id, err := protocol.ParseSessionID(raw)
	return id, err == nil
}

// insertTomb records a tombstone in memory, forgetting the oldest beyond
// max. The caller holds j.mu or owns j.
func (j *journal) insertTomb(id protocol.SessionID, at time.Time) {
	delete(j.states, id)
	delete(j.records, id)
	if _, ok := j.tombs[id]; ok {
		return
	}
	j.order = append(j.order, tombstone{id, at})
	j.tombs[id] = at
	for len(j.tombs) > j.max && len(j.order) > 0 {
		old := j.order[0]
		j.order = j.order[1:]
		if j.tombs[old.id].Equal(old.at) {
			delete(j.tombs, old.id)
		}
	}
}

// closed reports whether id was closed or cancelled recently.
func (j *journal) closed(id protocol.SessionID) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.tombs[id]
	return ok
}

// addTombstone remembers a closed or cancelled session.
func (j *journal) addTombstone(id protocol.SessionID, at time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.insertTomb(id, at)
	return j.appendLocked("X " + id.Bare() + " " + strconv.FormatInt(at.Unix(), 10))
}

// putState records the sealed state of a session that has no state file.
func (j *journal) putState(id protocol.SessionID, sealed []byte) error {
	if bytes.IndexByte(sealed, '\n') >= 0 {
		return errors.New("sealed state spans lines")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.states[id] = sealed
	delete(j.records, id)
	return j.appendLocked("S " + string(sealed))
}

// putRecord records a storage record of a session whose state is an S
// line: line is "<guid> <sealed record>", and counts until the next S or
// D line of the session.
func (j *journal) putRecord(id protocol.SessionID, line string) error {
	if strings.ContainsRune(line, '\n') {
		return errors.New("record spans lines")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.records[id] = line
	return j.appendLocked("R " + line)
}

// recordOf returns the R line of a session, if any.
func (j *journal) recordOf(id protocol.SessionID) (string, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	line, ok := j.records[id]
	return line, ok
}

// forget drops the S line of a session, if it has one.
func (j *journal) forget(id protocol.SessionID) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.states[id]; !ok {
		return nil
	}
	delete(j.states, id)
	delete(j.records, id)
	return j.appendLocked("D " + id.Bare())
}

// stateOf returns the sealed state recorded for a session, if any.
func (j *journal) stateOf(id protocol.SessionID) ([]byte, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, ok := j.states[id]
	return b, ok
}

// sealedStates returns the ids of the sessions the journal holds states
// of.
func (j *journal) sealedStates() []protocol.SessionID {
	j.mu.Lock()
	defer j.mu.Unlock()
	ids := make([]protocol.SessionID, 0, len(j.states))
	for id := range j.states {
		ids = append(ids, id)
	}
	return ids
}

// appendLocked writes one line. The caller holds j.mu.
func (j *journal) appendLocked(line string) error {
	if j.log == nil {
		return errors.New("session journal is closed")
	}
	j.lines++
	_, err := j.log.WriteString(line + "\n")
	return err
}

// expire forgets tombstones recorded before cutoff and compacts the log
// when most of its lines are dead.
func (j *journal) expire(cutoff time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := 0
	for ; i < len(j.order) && !j.order[i].at.After(cutoff); i++ {
		if at, ok := j.tombs[j.order[i].id]; ok && !at.After(cutoff) {
			delete(j.tombs, j.order[i].id)
		}
	}
	j.order = j.order[i:]
	if j.lines > 1024 && j.lines > 2*(len(j.tombs)+len(j.states)+len(j.records)) {
		return j.rewriteLocked()
	}
	return nil
}

func (j *journal) rewrite() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rewriteLocked()
}

// rewriteLocked replaces the log with the live entries and reopens it for
// appending. The caller holds j.mu.
func (j *journal) rewriteLocked() error {
	if j.log != nil {
		_ = j.log.Close()
		j.log = nil
	}
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("rewriting %s: %w", j.path, err)
	}
	w := bufio.NewWriter(f)
	n := 0
	for _, e := range j.order {
		if at, ok := j.tombs[e.id]; ok && at.Equal(e.at) {
			fmt.Fprintf(w, "X %s %d\n", e.id.Bare(), e.at.Unix())
			n++
		}
	}
	for _, sealed := range j.states {
		fmt.Fprintf(w, "S %s\n", sealed)
		n++
	}
	// After every S line, which would otherwise supersede them.
	for _, line := range j.records {
		fmt.Fprintf(w, "R %s\n", line)
		n++
	}
	err = w.Flush()
	if err == nil {
		// The rewritten log replaces one that may hold lines the next
		// start needs; it must not reach the disk empty.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rewriting %s: %w", j.path, err)
	}
	j.log, err = os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", j.path, err)
	}
	j.lines = n
	return nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil {
		return nil
	}
	err := j.log.Close()
	j.log = nil
	return err
}
