package session

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestJournalTolerance: lines of the journal that cannot be read, such as
// a torn last line, are skipped, and the rest is replayed.
func TestJournalTolerance(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	store := openStore(t, dir, Options{Now: clock.Now})
	kept := create(t, store, "", "kept.bin")
	// A session whose state is an S line (as one placed straight has).
	if err := kept.journalState(); err != nil {
		t.Fatal(err)
	}
	closed := create(t, store, "", "closed.bin")
	if _, err := store.Remove(t.Context(), closed.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	other := protocol.NewSessionID([16]byte{3})
	f, err := os.OpenFile(filepath.Join(dir, "journal.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"",
		"garbage",
		"X not-a-guid 123",
		"X " + other.Bare() + " notanumber",
		"S {not a state}",
		"D not-a-guid",
		"Q " + other.Bare(),
	} {
		fmt.Fprintln(f, line)
	}
	// The torn last line of a state being appended when the process died.
	fmt.Fprintf(f, `S {"mac":"AAAA","state":{"version":2,"id":"%s","ro`, other.Bare())
	f.Close()

	store = openStore(t, dir, Options{Now: clock.Now})
	if _, err := store.Get(kept.ID()); err != nil {
		t.Errorf("session before the torn line: %v", err)
	}
	if _, err := store.Get(closed.ID()); !errors.Is(err, ErrClosed) {
		t.Errorf("tombstone before the torn line: Get = %v, want ErrClosed", err)
	}
	if _, err := store.Get(other); !errors.Is(err, ErrNotFound) {
		t.Errorf("session of the unreadable lines: Get = %v, want ErrNotFound", err)
	}
	if store.Len() != 1 {
		t.Errorf("Len = %d, want 1", store.Len())
	}
	// What the journal holds now, as the next Open replays it: the
	// tombstone and the kept session's state, nothing of the bad lines.
	j := diskJournal(t, dir)
	if _, ok := j.tombs[closed.ID()]; !ok || len(j.tombs) != 1 {
		t.Errorf("journal tombstones %v, want only %s", j.tombs, closed.ID())
	}
	if _, ok := j.states[kept.ID()]; !ok || len(j.states) != 1 {
		t.Errorf("journal holds %d states, want only that of %s", len(j.states), kept.ID())
	}
}

// TestJournalStateCompaction: the S lines of sessions that got a state
// file of their own (dropped by a D line) are dead too; compaction keeps
// only the live states, which load back unchanged.
func TestJournalStateCompaction(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir, 1_000_000, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	id := func(i int) protocol.SessionID {
		return protocol.NewSessionID([16]byte{byte(i >> 8), byte(i), 0xbb})
	}
	state := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"mac":"","state":{"id":"%s","n":%d}}`, id(i), i))
	}
	const dropped, live = 600, 5
	for i := 0; i < dropped+live; i++ {
		if err := j.putState(id(i), state(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < dropped; i++ {
		if err := j.forget(id(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.putState(id(0), []byte("S\nspanning lines")); err == nil {
		t.Error("putState accepted a state that spans lines")
	}
	if err := j.expire(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if lines := journalLines(t, dir); len(lines) != live {
		t.Fatalf("journal has %d lines after compaction, want %d: %q", len(lines), live, lines)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	j, err = openJournal(dir, 1_000_000, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	for i := 0; i < dropped+live; i++ {
		b, ok := j.stateOf(id(i))
		if want := i >= dropped; ok != want || (ok && string(b) != string(state(i))) {
			t.Fatalf("after reload: state of #%d = %q, %v; want %v", i, b, ok, want)
		}
	}
}

// TestJournalExpiredTombstoneForgetsState: a session whose state is a
// line of the journal (one that never held a byte, or whose upload was
// placed straight from its only fragment) stays closed once its
// tombstone expires: it is not found, not resurrected from its state.
func TestJournalExpiredTombstoneForgetsState(t *testing.T) {
	clock := newFakeClock()
	dir, root := t.TempDir(), t.TempDir()
	opts := Options{Now: clock.Now, Timeout: time.Hour, TombstoneTTL: 2 * time.Hour}
	store := openStore(t, dir, opts)
	empty := create(t, store, root, "a.bin")
	placed := create(t, store, root, "b.bin")
	content := randBytes(34, 1000)
	if _, err := writeOpts(t, placed, rng(0, 999, 1000), bytes.NewReader(content), WriteOptions{Place: true}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Session{empty, placed} {
		if _, err := store.Remove(t.Context(), s.ID(), RemovedClosed); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Hour)
	store = openStore(t, dir, opts)
	for _, s := range []*Session{empty, placed} {
		if _, err := store.Get(s.ID()); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after its tombstone expired: Get = %v, want ErrNotFound", s.State().Path, err)
		}
	}
	if n := store.Len(); n != 0 {
		t.Errorf("Len = %d after reopening a store whose sessions were all closed", n)
	}
	if n := store.Owned("user:alice"); n != 0 {
		t.Errorf("Owned = %d after reopening a store whose sessions were all closed", n)
	}
	if lines := journalLines(t, dir); len(lines) != 0 {
		t.Errorf("journal after every tombstone expired = %q, want it compacted to empty", lines)
	}
	testutil.AssertFile(t, filepath.Join(root, "b.bin"), content)
}

// journalKinds returns, for each session of ids, the kinds of the
// journal lines (S, D or X) that name it, in order.
func journalKinds(t *testing.T, dir string, ids ...protocol.SessionID) map[protocol.SessionID]string {
	t.Helper()
	out := make(map[protocol.SessionID]string)
	for _, line := range journalLines(t, dir) {
		kind, rest, _ := strings.Cut(line, " ")
		var id protocol.SessionID
		switch kind {
		case "S":
			id, _ = sealedID(rest)
		case "D", "X":
			guid, _, _ := strings.Cut(rest, " ")
			id, _ = protocol.ParseSessionID("{" + guid + "}")
		}
		if slices.Contains(ids, id) {
			out[id] += kind
		}
	}
	return out
}

// TestJournalReplay follows sessions through the journal: a new session
// writes nothing (it is revived from its id when needed), one that holds
// bytes has a state file, a closed one gets an X line. Replayed by Open
// after a crash, a session without bytes revives from its client's next
// packet, closed sessions stay closed and the files a crash left of them
// are deleted, and the journal is compacted to the live entries.
func TestJournalReplay(t *testing.T) {
	clock := newFakeClock()
	dir, root := t.TempDir(), t.TempDir()
	opts := Options{Now: clock.Now}
	store := openStore(t, dir, opts)
	content := randBytes(35, 1000)
	fresh := create(t, store, root, "fresh.bin")
	held := create(t, store, root, "held.bin")
	mustWrite(t, held, content, 0, 99)
	closedEmpty := create(t, store, root, "closed-empty.bin")
	if _, err := store.Remove(t.Context(), closedEmpty.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	closedHeld := create(t, store, root, "closed-held.bin")
	mustWrite(t, closedHeld, content, 0, 199)
	// The state a crash after closedHeld's tombstone but before the
	// deletion of its files leaves: the files of this copy, and the
	// tombstone appended below.
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyTree(t, dir, crashed)
	if _, err := store.Remove(t.Context(), closedHeld.ID(), RemovedCancelled); err != nil {
		t.Fatal(err)
	}
	mustHaveNoFiles(t, dir, closedHeld.ID())

	kinds := journalKinds(t, dir, fresh.ID(), held.ID(), closedEmpty.ID(), closedHeld.ID())
	for id, want := range map[protocol.SessionID]string{fresh.ID(): "", held.ID(): "", closedEmpty.ID(): "X", closedHeld.ID(): "X"} {
		if kinds[id] != want {
			t.Errorf("journal lines of %s: %q, want %q", id, kinds[id], want)
		}
	}
	var tomb string
	for _, line := range journalLines(t, dir) {
		if strings.HasPrefix(line, "X "+closedHeld.ID().Bare()+" ") {
			tomb = line
		}
	}
	f, err := os.OpenFile(filepath.Join(crashed, journalFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The tombstone, and a torn last line after it.
	fmt.Fprintf(f, "%s\nS {\"mac\":\"AAAA\",\"sta", tomb)
	f.Close()
	mustExist(t, filepath.Join(crashed, activeName, closedHeld.ID().Bare()+dataSuffix))

	store = openStore(t, crashed, opts)
	if _, err := store.Get(fresh.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("session without bytes after a crash: Get = %v, want ErrNotFound until revived", err)
	}
	info := CreateInfo{Root: root, Path: "fresh.bin", User: "alice"}
	if s, err := store.Revive(fresh.ID(), info); err != nil {
		t.Errorf("reviving the session without bytes after a crash: %v", err)
	} else if st := s.State(); st.Received != 0 || st.Total != -1 || st.Path != "fresh.bin" || st.Root != root {
		t.Errorf("session without bytes after a crash: %+v", st)
	}
	mustHaveNoFiles(t, crashed, fresh.ID())
	if s, err := store.Get(held.ID()); err != nil || s.State().Received != 100 {
		t.Errorf("session with bytes after a crash: %v", err)
	}
	for _, id := range []protocol.SessionID{closedEmpty.ID(), closedHeld.ID()} {
		if _, err := store.Get(id); !errors.Is(err, ErrClosed) {
			t.Errorf("closed session %s after a crash: Get = %v, want ErrClosed", id, err)
		}
		if _, err := store.Revive(id, CreateInfo{Root: root, Path: "closed-empty.bin", User: "alice"}); !errors.Is(err, ErrClosed) {
			t.Errorf("closed session %s after a crash: Revive = %v, want ErrClosed", id, err)
		}
	}
	mustHaveNoFiles(t, crashed, closedHeld.ID())
	if store.Len() != 2 {
		t.Errorf("Len = %d, want 2", store.Len())
	}
	// Compacted: the two tombstones, nothing else.
	kinds = journalKinds(t, crashed, fresh.ID(), held.ID(), closedEmpty.ID(), closedHeld.ID())
	for id, want := range map[protocol.SessionID]string{fresh.ID(): "", held.ID(): "", closedEmpty.ID(): "X", closedHeld.ID(): "X"} {
		if kinds[id] != want {
			t.Errorf("journal lines of %s after Open: %q, want %q", id, kinds[id], want)
		}
	}
	if n := len(journalLines(t, crashed)); n != 2 {
		t.Errorf("journal has %d lines after Open, want 2", n)
	}
}
