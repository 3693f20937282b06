package session

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestReapEmptySessions: a session that has received no byte is reaped
// after the empty-session timeout and forgotten; sessions with bytes, and
// an empty upload that was placed, wait for the full timeout.
func TestReapEmptySessions(t *testing.T) {
	clock := newFakeClock()
	var rec removals
	root := t.TempDir()
	dir := t.TempDir()
	store := openStore(t, dir, Options{Now: clock.Now, Timeout: time.Hour, EmptyTimeout: 5 * time.Minute, OnRemove: rec.hook})
	if got := store.EmptyTimeout(); got != 5*time.Minute {
		t.Fatalf("EmptyTimeout = %v, want 5m", got)
	}
	content := randBytes(42, 1000)

	empty := create(t, store, root, "empty.bin")
	gap := create(t, store, root, "gap.bin")
	if res, err := writeBody(t, gap, rng(500, 999, 1000), unreadable{t}); err != nil || res.Action != protocol.Gap {
		t.Fatalf("gap fragment: %+v, %v", res, err)
	}
	partial := create(t, store, root, "partial.bin")
	mustWrite(t, partial, content, 0, 9)
	emptyUpload := completed(t, store, root, "zero.bin", nil)
	if err := commit(t, emptyUpload, false); err != nil {
		t.Fatal(err)
	}

	clock.Advance(5 * time.Minute)
	if n := store.Reap(); n != 0 {
		t.Fatalf("Reap at exactly the empty-session timeout removed %d sessions", n)
	}
	clock.Advance(time.Second)
	if n := store.Reap(); n != 2 {
		t.Fatalf("Reap after the empty-session timeout removed %d sessions, want 2 (empty and gap)", n)
	}
	for _, s := range []*Session{empty, gap} {
		if _, err := store.Get(s.ID()); !errors.Is(err, ErrNotFound) {
			t.Errorf("reaped empty session %s: Get = %v, want ErrNotFound (its client starts over)", s.State().Path, err)
		}
		mustNotBeStored(t, dir, s.ID())
		if st := journalState(t, dir, store.key, s.ID()); st != nil {
			t.Errorf("the journal still holds the state of reaped session %s", s.State().Path)
		}
	}
	for _, s := range []*Session{partial, emptyUpload} {
		if _, err := store.Get(s.ID()); err != nil {
			t.Errorf("session %s reaped by the empty-session timeout: %v", s.State().Path, err)
		}
	}
	calls := rec.get()
	if len(calls) != 2 || calls[0].reason != RemovedReaped || calls[1].reason != RemovedReaped {
		t.Fatalf("OnRemove calls %+v, want two reaped", calls)
	}
	testutil.AssertFile(t, filepath.Join(root, "zero.bin"), nil)

	clock.Advance(time.Hour)
	if n := store.Reap(); n != 2 {
		t.Fatalf("Reap after the timeout removed %d sessions, want 2", n)
	}
	if _, err := store.Get(emptyUpload.ID()); !errors.Is(err, ErrClosed) {
		t.Errorf("reaped placed empty upload: Get = %v, want ErrClosed", err)
	}
}

// TestEmptyTimeoutDefaults checks the empty-session timeout's default and
// its cap at the session timeout.
func TestEmptyTimeoutDefaults(t *testing.T) {
	store := openStore(t, "", Options{})
	if got := store.EmptyTimeout(); got != DefaultEmptyTimeout {
		t.Errorf("default EmptyTimeout = %v, want %v", got, DefaultEmptyTimeout)
	}
	store.SetTimeout(time.Minute)
	if got := store.EmptyTimeout(); got != time.Minute {
		t.Errorf("EmptyTimeout with a 1m timeout = %v, want it capped at 1m", got)
	}
	store.SetTimeout(0)
	store.SetEmptyTimeout(time.Hour)
	if got := store.EmptyTimeout(); got != time.Hour {
		t.Errorf("EmptyTimeout after SetEmptyTimeout(1h) = %v", got)
	}
	store.SetEmptyTimeout(0)
	if got := store.EmptyTimeout(); got != DefaultEmptyTimeout {
		t.Errorf("EmptyTimeout after SetEmptyTimeout(0) = %v, want the default", got)
	}
	for _, tc := range []struct {
		opts Options
		want time.Duration
	}{
		{Options{Timeout: 2 * time.Minute}, 2 * time.Minute},
		{Options{EmptyTimeout: 30 * time.Second}, 30 * time.Second},
		{Options{Timeout: time.Minute, EmptyTimeout: time.Hour}, time.Minute},
	} {
		if got := openStore(t, "", tc.opts).EmptyTimeout(); got != tc.want {
			t.Errorf("EmptyTimeout with %+v = %v, want %v", tc.opts, got, tc.want)
		}
	}
}

// TestReaperSetEmptyTimeout: lowering the empty-session timeout of a
// running store wakes the reaper too.
func TestReaperSetEmptyTimeout(t *testing.T) {
	hook, removed := removalSignal()
	store := openStore(t, "", Options{OnRemove: hook})
	empty := create(t, store, "", "f.bin")
	withBytes := create(t, store, "", "g.bin")
	mustWrite(t, withBytes, randBytes(45, 100), 0, 49)
	store.SetEmptyTimeout(300 * time.Millisecond)
	if c := within(t, removed, "reaping"); c.st.ID != empty.ID() || c.reason != RemovedReaped {
		t.Fatalf("OnRemove call %+v, want the empty session reaped", c)
	}
	if _, err := store.Get(withBytes.ID()); err != nil {
		t.Fatalf("session with bytes reaped by the empty-session timeout: %v", err)
	}
}
