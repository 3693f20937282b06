package session

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestReapInterval(t *testing.T) {
	tests := []struct {
		timeout, want time.Duration
	}{
		{0, 250 * time.Millisecond},
		{time.Millisecond, 250 * time.Millisecond},
		{time.Second, 250 * time.Millisecond},
		{2 * time.Second, 500 * time.Millisecond},
		{8 * time.Minute, 2 * time.Minute},
		{20 * time.Minute, 5 * time.Minute},
		{21 * time.Minute, 5 * time.Minute},
		{time.Hour, 5 * time.Minute},
		{DefaultTimeout, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := reapInterval(tt.timeout); got != tt.want {
			t.Errorf("reapInterval(%v) = %v, want %v", tt.timeout, got, tt.want)
		}
	}
}

func TestReap(t *testing.T) {
	clock := newFakeClock()
	var rec removals
	root := t.TempDir()
	store := openStore(t, "", Options{Now: clock.Now, Timeout: time.Hour, OnRemove: rec.hook})
	content := randBytes(40, 3000)

	idle := create(t, store, root, "idle.bin")
	mustWrite(t, idle, content, 0, 999)
	active := create(t, store, root, "active.bin")
	locked := create(t, store, root, "locked.bin")
	finished := completed(t, store, root, "finished.bin", content)
	if err := finished.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := finished.Commit(false); err != nil {
		t.Fatal(err)
	}
	if err := finished.Finish(FinalInfo{}); err != nil {
		t.Fatal(err)
	}
	finished.Unlock()
	boundary := create(t, store, root, "boundary.bin")

	clock.Advance(50 * time.Minute)
	mustWrite(t, active, content, 0, 99) // activity 10 min before the check
	// The boundary session is touched so that it is idle for exactly the
	// timeout at the check: not reaped yet.
	if err := boundary.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	boundary.touch()
	boundary.Unlock()
	clock.Advance(10 * time.Minute)
	if n := store.Reap(); n != 0 {
		t.Fatalf("Reap at exactly the timeout removed %d sessions", n)
	}

	clock.Advance(10 * time.Minute) // idle, locked and finished: 70 min; active: 20; boundary: 20
	if err := locked.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := store.Reap(); n != 2 {
		t.Fatalf("Reap removed %d sessions, want 2 (idle and finished)", n)
	}
	mustNotExist(t, idle.dir)
	mustNotExist(t, finished.dir)
	mustExist(t, active.dir)
	mustExist(t, locked.dir)
	mustExist(t, boundary.dir)
	if _, err := store.Get(idle.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("reaped unfinished session: Get = %v, want ErrNotFound", err)
	}
	if _, err := store.Get(finished.ID()); !errors.Is(err, ErrClosed) {
		t.Errorf("reaped finished session: Get = %v, want ErrClosed", err)
	}
	if got := fileSum(t, filepath.Join(root, "finished.bin")); got != sum(content) {
		t.Errorf("committed destination damaged by reaping")
	}
	calls := rec.get()
	if len(calls) != 2 {
		t.Fatalf("OnRemove called %d times, want 2", len(calls))
	}
	for _, c := range calls {
		if c.reason != RemovedReaped {
			t.Errorf("OnRemove reason %v for %s, want reaped", c.reason, c.st.Path)
		}
		if c.st.ID != idle.ID() && c.st.ID != finished.ID() {
			t.Errorf("OnRemove for unexpected session %s", c.st.Path)
		}
	}

	// Once its request ends, the locked session is reaped too.
	locked.Unlock()
	if n := store.Reap(); n != 1 {
		t.Fatalf("Reap after unlock removed %d sessions, want 1", n)
	}
	mustNotExist(t, locked.dir)
	if store.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (active, boundary)", store.Len())
	}

	clock.Advance(time.Hour)
	if n := store.Reap(); n != 2 {
		t.Fatalf("final Reap removed %d, want 2", n)
	}
	if store.Len() != 0 {
		t.Fatalf("Len = %d", store.Len())
	}
}

// TestReapAfterReopen: LastActivity survives a restart, so a session idle
// before the restart is reaped after it.
func TestReapAfterReopen(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	opts := Options{Now: clock.Now, Timeout: time.Hour}
	store := openStore(t, dir, opts)
	sess := create(t, store, "", "f.bin")
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	store = openStore(t, dir, opts)
	if n := store.Reap(); n != 1 {
		t.Fatalf("Reap after reopen removed %d, want 1", n)
	}
	if _, err := store.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
}

func waitGone(t *testing.T, dir string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if !fileExists(dir) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s still exists after %v", dir, within)
	return 0
}

func waitFor(t *testing.T, cond func() bool, within time.Duration) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReaperRealTime runs the background reaper with a real clock.
func TestReaperRealTime(t *testing.T) {
	var rec removals
	store := openStore(t, "", Options{Timeout: time.Second, OnRemove: rec.hook})
	start := time.Now()
	sess := create(t, store, "", "f.bin")
	waitGone(t, sess.dir, 3*time.Second)
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("session reaped after %v, before its 1 s timeout", elapsed)
	}
	// OnRemove runs once the store has forgotten the session.
	waitFor(t, func() bool { return len(rec.get()) > 0 }, time.Second)
	if _, err := store.Get(sess.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	if calls := rec.get(); len(calls) != 1 || calls[0].reason != RemovedReaped {
		t.Fatalf("OnRemove calls %+v", calls)
	}
}

// TestReaperSetTimeout: lowering the timeout of a running store wakes the
// reaper, which then checks at the new, shorter interval.
func TestReaperSetTimeout(t *testing.T) {
	var rec removals
	store := openStore(t, "", Options{OnRemove: rec.hook}) // 14 days: checks every 5 minutes
	sess := create(t, store, "", "f.bin")
	store.SetTimeout(500 * time.Millisecond)
	waitGone(t, sess.dir, 3*time.Second)
	waitFor(t, func() bool { return len(rec.get()) > 0 }, time.Second)
	if store.Len() != 0 {
		t.Fatalf("Len = %d", store.Len())
	}
}

// TestReaperStopsOnClose: after Close the reaper no longer removes
// sessions, which stay on disk for the next Open.
func TestReaperStopsOnClose(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{Timeout: 200 * time.Millisecond})
	sess := create(t, store, "", "f.bin")
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	mustExist(t, sess.dir)
}
