package session

import (
	"errors"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestRevive checks that a session lost before it held a byte is made
// again from its id only for the destination and user it was made for,
// within the session timeout, and never once it was closed.
func TestRevive(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	store := openStore(t, dir, Options{Now: clock.Now, Timeout: 48 * time.Hour})
	root := t.TempDir()
	info := CreateInfo{Root: root, Path: "a/f.bin", User: "alice", Client: "192.0.2.1"}
	sess, err := store.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	id := sess.ID()
	closed, err := store.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Remove(t.Context(), closed.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Hour)
	store = openStore(t, dir, Options{Now: clock.Now, Timeout: 48 * time.Hour})
	if _, err := store.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a session that held nothing after a restart = %v, want ErrNotFound", err)
	}

	for _, tc := range []struct {
		name string
		info CreateInfo
	}{
		{"another path", CreateInfo{Root: root, Path: "a/g.bin", User: "alice"}},
		{"another root", CreateInfo{Root: t.TempDir(), Path: "a/f.bin", User: "alice"}},
		{"another user", CreateInfo{Root: root, Path: "a/f.bin", User: "mallory"}},
		{"no user", CreateInfo{Root: root, Path: "a/f.bin"}},
	} {
		if _, err := store.Revive(id, tc.info); !errors.Is(err, ErrNotFound) {
			t.Errorf("Revive with %s = %v, want ErrNotFound", tc.name, err)
		}
	}
	forged := protocol.NewSessionID([16]byte{1, 2, 3, 4, 5, 6, 0x40, 7, 0x80, 9, 10, 11, 12, 13, 14, 15})
	if _, err := store.Revive(forged, info); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revive of an id the store did not make = %v, want ErrNotFound", err)
	}
	if _, err := store.Revive(closed.ID(), info); !errors.Is(err, ErrClosed) {
		t.Errorf("Revive of a closed session = %v, want ErrClosed", err)
	}
	if _, err := store.Revive(id, CreateInfo{Root: root, Path: "a/f.bin", User: "alice", MaxPerOwner: 1}); err != nil {
		t.Fatalf("Revive: %v", err)
	}
	again, err := store.Revive(id, info)
	if err != nil || again.ID() != id {
		t.Fatalf("Revive of a session the store holds = %v, %v", again, err)
	}
	if n := store.Owned(again.State().Owner()); n != 1 {
		t.Errorf("owner holds %d sessions, want 1", n)
	}
	if _, err := store.Create(CreateInfo{Root: root, Path: "b.bin", User: "alice", MaxPerOwner: 1}); !errors.Is(err, ErrLimitReached) {
		t.Errorf("Create past the owner's limit with a revived session = %v, want ErrLimitReached", err)
	}

	// A session reaped as empty revives while its id is young, and no
	// longer past the session timeout.
	other := CreateInfo{Root: root, Path: "c.bin", User: "bob"}
	late, err := store.Create(other)
	if err != nil {
		t.Fatal(err)
	}
	lateID := late.ID()
	clock.Advance(time.Hour)
	if n := store.Reap(); n != 2 {
		t.Fatalf("Reap removed %d sessions, want the two empty ones", n)
	}
	if _, err := store.Revive(lateID, other); err != nil {
		t.Fatalf("Revive of a session reaped as empty: %v", err)
	}
	clock.Advance(time.Hour)
	store.Reap()
	clock.Advance(50 * time.Hour)
	if _, err := store.Revive(lateID, other); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revive past the session timeout = %v, want ErrNotFound", err)
	}
}
