package session

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// removals records OnRemove calls.
type removals struct {
	mu    sync.Mutex
	calls []removal
}

type removal struct {
	st     State
	reason RemoveReason
}

func (r *removals) hook(st State, reason RemoveReason) {
	r.mu.Lock()
	r.calls = append(r.calls, removal{st, reason})
	r.mu.Unlock()
}

func (r *removals) get() []removal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]removal(nil), r.calls...)
}

func TestRemove(t *testing.T) {
	for _, reason := range []RemoveReason{RemovedClosed, RemovedCancelled} {
		t.Run(reason.String(), func(t *testing.T) {
			var rec removals
			dir := t.TempDir()
			store := openStore(t, dir, Options{OnRemove: rec.hook})
			content := randBytes(30, 2000)
			sess := create(t, store, "", "f.bin")
			mustWrite(t, sess, content, 0, 999)
			other := createHeld(t, store, "", "g.bin")

			st, err := store.Remove(t.Context(), sess.ID(), reason)
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if st.ID != sess.ID() || st.Received != 1000 || st.Total != 2000 {
				t.Errorf("Remove returned state %+v", st)
			}
			mustHaveNoFiles(t, dir, sess.ID())
			if !sess.Gone() {
				t.Error("Gone() false after Remove")
			}
			calls := rec.get()
			if len(calls) != 1 || calls[0].reason != reason || calls[0].st.ID != sess.ID() || calls[0].st.Received != 1000 {
				t.Errorf("OnRemove calls = %+v, want one with reason %v", calls, reason)
			}
			if _, err := store.Get(sess.ID()); !errors.Is(err, ErrClosed) {
				t.Errorf("Get after Remove = %v, want ErrClosed", err)
			}
			if _, err := store.Acquire(t.Context(), sess.ID(), nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Acquire after Remove = %v, want ErrClosed", err)
			}
			for _, again := range []RemoveReason{RemovedClosed, RemovedCancelled} {
				if _, err := store.Remove(t.Context(), sess.ID(), again); !errors.Is(err, ErrClosed) {
					t.Errorf("repeated Remove (%v) = %v, want ErrClosed", again, err)
				}
			}
			if len(rec.get()) != 1 {
				t.Errorf("OnRemove called again for a repeated Remove")
			}
			if store.Len() != 1 {
				t.Errorf("Len = %d, want 1", store.Len())
			}
			if _, err := store.Get(other.ID()); err != nil {
				t.Errorf("other session affected: %v", err)
			}
			if log, err := os.ReadFile(filepath.Join(dir, "journal.log")); err != nil || !strings.Contains("\n"+string(log), "\nX "+sess.ID().Bare()+" ") {
				t.Errorf("journal.log = %q, %v; want a tombstone line for %s", log, err, sess.ID().Bare())
			}

			// The tombstone survives a restart.
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			store = openStore(t, dir, Options{})
			if _, err := store.Get(sess.ID()); !errors.Is(err, ErrClosed) {
				t.Errorf("Get after reopen = %v, want ErrClosed", err)
			}
			if _, err := store.Get(other.ID()); err != nil {
				t.Errorf("other session after reopen: %v", err)
			}
			mustHaveNoFiles(t, dir, sess.ID())
		})
	}
}

func TestTombstoneExpiry(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	opts := Options{Now: clock.Now, Timeout: time.Hour, TombstoneTTL: 2 * time.Hour}
	store := openStore(t, dir, opts)
	content := randBytes(32, 100)
	// Sessions that hold bytes, whose state is a file of their own (see
	// TestJournalExpiredTombstoneForgetsState for sessions without one).
	early := create(t, store, "", "a.bin")
	mustWrite(t, early, content, 0, 9)
	if _, err := store.Remove(t.Context(), early.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	late := create(t, store, "", "b.bin")
	mustWrite(t, late, content, 0, 9)
	if _, err := store.Remove(t.Context(), late.ID(), RemovedCancelled); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour - time.Second) // early removed 2h-1s ago
	store.Reap()
	if _, err := store.Get(early.ID()); !errors.Is(err, ErrClosed) {
		t.Fatalf("tombstone younger than its TTL: Get = %v, want ErrClosed", err)
	}
	clock.Advance(2 * time.Second) // early removed 2h+1s ago, late 1h+1s
	store.Reap()
	if _, err := store.Get(early.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired tombstone: Get = %v, want ErrNotFound", err)
	}
	if _, err := store.Get(late.ID()); !errors.Is(err, ErrClosed) {
		t.Fatalf("live tombstone: Get = %v, want ErrClosed", err)
	}

	// Expiry also applies when the log is loaded.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour) // late removed 2h+1s ago
	store = openStore(t, dir, opts)
	if _, err := store.Get(late.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tombstone expired while closed: Get = %v, want ErrNotFound", err)
	}
	if _, err := store.Get(early.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tombstone expired before Close: Get after reopen = %v, want ErrNotFound", err)
	}
	if log, err := os.ReadFile(filepath.Join(dir, "journal.log")); err != nil || len(log) != 0 {
		t.Fatalf("journal.log after every tombstone expired = %q, %v; want it compacted to empty", log, err)
	}
}

// TestTombstoneTTLShorterThanTimeout: Options.TombstoneTTL says how long a
// closed id is remembered. A running store and a reopened one must agree.
func TestTombstoneTTLShorterThanTimeout(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	opts := Options{Now: clock.Now, Timeout: 4 * time.Hour, TombstoneTTL: time.Hour}
	store := openStore(t, dir, opts)
	sess := create(t, store, "", "a.bin")
	mustWrite(t, sess, randBytes(33, 100), 0, 9) // a state file of its own
	if _, err := store.Remove(t.Context(), sess.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	store.Reap()
	_, running := store.Get(sess.ID())
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, opts)
	_, reopened := store.Get(sess.ID())
	if !errors.Is(reopened, ErrNotFound) {
		t.Fatalf("after reopen, 2h after removal with a 1h TombstoneTTL: Get = %v, want ErrNotFound", reopened)
	}
	if !errors.Is(running, ErrNotFound) {
		t.Fatalf("Reap expires tombstones after max(TombstoneTTL, Timeout) = 4h, but Open after TombstoneTTL = 1h: "+
			"running store Get = %v, reopened store Get = %v", running, reopened)
	}
}

func TestMaxTombstones(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	opts := Options{Now: clock.Now, MaxTombstones: 3}
	store := openStore(t, dir, opts)
	var ids []protocol.SessionID
	for i := 0; i < 5; i++ {
		sess := create(t, store, "", "f.bin")
		if _, err := store.Remove(t.Context(), sess.ID(), RemovedClosed); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sess.ID())
		clock.Advance(time.Second)
	}
	check := func(when string) {
		t.Helper()
		for i, id := range ids {
			want := ErrClosed
			if i < 2 {
				want = ErrNotFound // the two oldest were evicted
			}
			if _, err := store.Get(id); !errors.Is(err, want) {
				t.Errorf("%s: Get(removed #%d) = %v, want %v", when, i, err, want)
			}
		}
	}
	check("running")
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, opts)
	check("after reopen")

	// A smaller bound on reopen keeps only the newest.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	opts.MaxTombstones = 1
	store = openStore(t, dir, opts)
	for i, id := range ids {
		want := ErrNotFound
		if i == len(ids)-1 {
			want = ErrClosed
		}
		if _, err := store.Get(id); !errors.Is(err, want) {
			t.Errorf("MaxTombstones 1: Get(removed #%d) = %v, want %v", i, err, want)
		}
	}
}

// TestTombstoneLogTolerance: an earlier version's closed.log is read as
// tombstones, lines it cannot read are skipped, and it is replaced by
// the journal, compacted to the live entries.
func TestTombstoneLogTolerance(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	good := protocol.NewSessionID([16]byte{1})
	upper := protocol.NewSessionID([16]byte{2})
	log := strings.Join([]string{
		"garbage",
		"not-a-guid 123",
		good.Bare() + " notanumber",
		good.Bare() + " " + strconv.FormatInt(clock.Now().Add(-time.Minute).Unix(), 10),
		toUpper(upper.Bare()) + " " + strconv.FormatInt(clock.Now().Unix(), 10),
		"",
	}, "\n")
	writeFile(t, filepath.Join(dir, "closed.log"), []byte(log))
	store := openStore(t, dir, Options{Now: clock.Now})
	if _, err := store.Get(good); !errors.Is(err, ErrClosed) {
		t.Errorf("Get(good) = %v, want ErrClosed", err)
	}
	if _, err := store.Get(upper); !errors.Is(err, ErrClosed) {
		t.Errorf("upper-case GUID in the log: Get = %v, want ErrClosed", err)
	}
	mustNotExist(t, filepath.Join(dir, "closed.log"))
	lines := journalLines(t, dir)
	want := []string{
		"X " + good.Bare() + " " + strconv.FormatInt(clock.Now().Add(-time.Minute).Unix(), 10),
		"X " + upper.Bare() + " " + strconv.FormatInt(clock.Now().Unix(), 10),
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("journal not compacted to the two live entries: %q, want %q", lines, want)
	}
}

// TestTombstoneLogCompaction exercises the journal directly: once most of
// its lines are dead, expire rewrites it with only the live entries, and
// the rewritten journal loads back to the same set.
func TestTombstoneLogCompaction(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.log")
	t0 := time.Unix(1_700_000_000, 0)
	j, err := openJournal(dir, 1_000_000, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	id := func(i int) protocol.SessionID {
		return protocol.NewSessionID([16]byte{byte(i >> 8), byte(i), 0xaa})
	}
	const old, live = 1100, 10
	for i := 0; i < old; i++ {
		if err := j.addTombstone(id(i), t0); err != nil {
			t.Fatal(err)
		}
	}
	for i := old; i < old+live; i++ {
		if err := j.addTombstone(id(i), t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.expire(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < old+live; i++ {
		if got, want := j.closed(id(i)), i >= old; got != want {
			t.Fatalf("closed(#%d) = %v, want %v", i, got, want)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != live {
		t.Fatalf("journal has %d lines after compaction, want %d", n, live)
	}
	// Appending after the rewrite still works.
	if err := j.addTombstone(id(5000), t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if err := j.addTombstone(id(5001), t0); err == nil {
		t.Error("addTombstone after close reported success")
	}
	j, err = openJournal(dir, 1_000_000, t0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	for i := 0; i < old+live; i++ {
		if got, want := j.closed(id(i)), i >= old; got != want {
			t.Fatalf("after reload: closed(#%d) = %v, want %v", i, got, want)
		}
	}
	if !j.closed(id(5000)) {
		t.Fatal("entry appended after the rewrite was lost")
	}
}

// TestOpenFailureReleasesLock: when Open fails after taking the directory
// lock, the lock is released, so a later Open succeeds.
func TestOpenFailureReleasesLock(t *testing.T) {
	for _, name := range []string{"closed.log", "journal.log"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			mkdir(t, filepath.Join(dir, name)) // unreadable as a log
			if s, err := Open(dir, Options{}); err == nil {
				s.Close()
				t.Fatalf("Open with a directory as %s succeeded", name)
			}
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			openStore(t, dir, Options{})
		})
	}
}
