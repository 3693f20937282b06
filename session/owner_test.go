package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// ownerCreate makes a session for user (or, without one, client) with the
// given per-owner limit.
func ownerCreate(t testing.TB, st *Store, root, user, client string, limit int) (*Session, error) {
	t.Helper()
	return st.Create(CreateInfo{
		Root: root, Path: "f.bin", URL: "https://example.com/f.bin",
		User: user, Client: client, MaxPerOwner: limit,
	})
}

// mustOwnerCreate is ownerCreate that fails the test on error.
func mustOwnerCreate(t testing.TB, st *Store, root, user, client string, limit int) *Session {
	t.Helper()
	sess, err := ownerCreate(t, st, root, user, client, limit)
	if err != nil {
		t.Fatalf("Create(user %q, client %q, limit %d): %v", user, client, limit, err)
	}
	return sess
}

// checkOwned compares Store.Owned for every owner in want.
func checkOwned(t testing.TB, st *Store, want map[string]int) {
	t.Helper()
	for owner, n := range want {
		if got := st.Owned(owner); got != n {
			t.Errorf("Owned(%q) = %d, want %d", owner, got, n)
		}
	}
}

// activeDirs returns the number of sessions on disk.
func activeDirs(t testing.TB, st *Store) int {
	t.Helper()
	ids, err := Stored(st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

func TestOpsOwnerOf(t *testing.T) {
	for _, tc := range []struct {
		st   State
		want string
	}{
		{State{User: "alice", Client: "1.2.3.4"}, "user:alice"},
		{State{Client: "1.2.3.4"}, "ip:1.2.3.4"},
		{State{Client: "2001:db8::1"}, "ip:2001:db8::1"},
		// A user named like an address is still a user.
		{State{User: "1.2.3.4", Client: "1.2.3.4"}, "user:1.2.3.4"},
		{State{}, "ip:"},
	} {
		if got := tc.st.Owner(); got != tc.want {
			t.Errorf("Owner() of user %q client %q = %q, want %q", tc.st.User, tc.st.Client, got, tc.want)
		}
	}
}

// TestOpsOwnedCounts checks that sessions count against their user, or
// without one their client address, and that the limit refuses one more
// without leaving anything behind.
func TestOpsOwnedCounts(t *testing.T) {
	st := openStore(t, "", Options{})
	root := t.TempDir()
	mustOwnerCreate(t, st, root, "alice", "1.2.3.4", 0)
	mustOwnerCreate(t, st, root, "alice", "5.6.7.8", 0)
	mustOwnerCreate(t, st, root, "", "1.2.3.4", 0)
	checkOwned(t, st, map[string]int{
		"user:alice":   2,
		"ip:1.2.3.4":   1,
		"ip:5.6.7.8":   0,
		"user:bob":     0,
		"ip:":          0,
		"alice":        0,
		"user:1.2.3.4": 0,
	})

	// Limit 2: alice is full, the address has room for one more, bob for
	// two.
	if _, err := ownerCreate(t, st, root, "alice", "9.9.9.9", 2); !errors.Is(err, ErrLimitReached) {
		t.Fatalf("alice's third session with limit 2: err %v, want ErrLimitReached", err)
	}
	// Sessions without bytes are stored nowhere; a refused one is not
	// even in memory.
	if st.Len() != 3 || activeDirs(t, st) != 0 {
		t.Fatalf("after a refused Create: Len %d, %d stored; want 3 and 0", st.Len(), activeDirs(t, st))
	}
	mustOwnerCreate(t, st, root, "", "1.2.3.4", 2)
	if _, err := ownerCreate(t, st, root, "", "1.2.3.4", 2); !errors.Is(err, ErrLimitReached) {
		t.Fatalf("the address's third session with limit 2: err %v, want ErrLimitReached", err)
	}
	mustOwnerCreate(t, st, root, "bob", "1.2.3.4", 2)
	mustOwnerCreate(t, st, root, "bob", "1.2.3.4", 2)
	// The limit is per request: a higher one admits more, none is unlimited.
	mustOwnerCreate(t, st, root, "alice", "", 3)
	mustOwnerCreate(t, st, root, "alice", "", 0)
	checkOwned(t, st, map[string]int{"user:alice": 4, "user:bob": 2, "ip:1.2.3.4": 2})
	if st.Len() != 8 || activeDirs(t, st) != 0 {
		t.Errorf("Len %d, %d directories; want 8 and none stored", st.Len(), activeDirs(t, st))
	}
}

// TestOpsOwnerLimitConcurrent creates sessions for one owner from 50
// goroutines at once with limit 5: exactly 5 may succeed.
func TestOpsOwnerLimitConcurrent(t *testing.T) {
	st := openStore(t, "", Options{})
	root := t.TempDir()
	for _, owner := range []struct{ user, client string }{{"alice", "10.0.0.1"}, {"", "10.0.0.2"}} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, limited := 0, 0
		start := make(chan struct{})
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := ownerCreate(t, st, root, owner.user, owner.client, 5)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrLimitReached):
					limited++
				default:
					t.Errorf("Create: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if ok != 5 || limited != 45 {
			t.Errorf("owner %+v: %d created, %d refused; want 5 and 45", owner, ok, limited)
		}
	}
	checkOwned(t, st, map[string]int{"user:alice": 5, "ip:10.0.0.2": 5})
	if st.Len() != 10 || activeDirs(t, st) != 0 {
		t.Errorf("Len %d, %d stored; want 10 and none", st.Len(), activeDirs(t, st))
	}
}

// TestOpsOwnerReleasedOnRemove checks that closing and cancelling give
// the slot back, exactly once.
func TestOpsOwnerReleasedOnRemove(t *testing.T) {
	st := openStore(t, "", Options{})
	root := t.TempDir()
	ctx := context.Background()
	a := mustOwnerCreate(t, st, root, "alice", "", 2)
	b := mustOwnerCreate(t, st, root, "alice", "", 2)
	if _, err := ownerCreate(t, st, root, "alice", "", 2); !errors.Is(err, ErrLimitReached) {
		t.Fatalf("err %v, want ErrLimitReached", err)
	}

	if _, err := st.Remove(ctx, a.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, st, map[string]int{"user:alice": 1})
	// Removing it again changes nothing.
	if _, err := st.Remove(ctx, a.ID(), RemovedCancelled); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Remove: err %v, want ErrClosed", err)
	}
	checkOwned(t, st, map[string]int{"user:alice": 1})
	c := mustOwnerCreate(t, st, root, "alice", "", 2)
	if _, err := ownerCreate(t, st, root, "alice", "", 2); !errors.Is(err, ErrLimitReached) {
		t.Fatalf("err %v, want ErrLimitReached", err)
	}

	// Lease.Remove (Cancel-Session in the handler) releases too.
	l, err := st.Acquire(ctx, b.ID(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Remove(RemovedCancelled)
	l.Release()
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, st, map[string]int{"user:alice": 1})
	if _, err := st.Remove(ctx, c.ID(), RemovedCancelled); err != nil {
		t.Fatal(err)
	}
	checkOwned(t, st, map[string]int{"user:alice": 0})
	mustOwnerCreate(t, st, root, "alice", "", 2)
	mustOwnerCreate(t, st, root, "alice", "", 2)
	checkOwned(t, st, map[string]int{"user:alice": 2})
}

// TestOpsOwnerReleasedOnReap checks that reaping gives the slot back, and
// only for the sessions reaped.
func TestOpsOwnerReleasedOnReap(t *testing.T) {
	clock := newFakeClock()
	st := openStore(t, "", Options{Timeout: time.Hour, EmptyTimeout: time.Hour, Now: clock.Now})
	root := t.TempDir()
	mustOwnerCreate(t, st, root, "alice", "", 2)
	mustOwnerCreate(t, st, root, "", "1.2.3.4", 2)
	clock.Advance(40 * time.Minute)
	busy := mustOwnerCreate(t, st, root, "alice", "", 2)
	checkOwned(t, st, map[string]int{"user:alice": 2, "ip:1.2.3.4": 1})

	clock.Advance(30 * time.Minute)
	if n := st.Reap(); n != 2 {
		t.Fatalf("Reap removed %d sessions, want 2", n)
	}
	checkOwned(t, st, map[string]int{"user:alice": 1, "ip:1.2.3.4": 0})
	if _, err := st.Get(busy.ID()); err != nil {
		t.Fatalf("the recent session was reaped: %v", err)
	}
	mustOwnerCreate(t, st, root, "alice", "", 2)
	if _, err := ownerCreate(t, st, root, "alice", "", 2); !errors.Is(err, ErrLimitReached) {
		t.Fatalf("err %v, want ErrLimitReached", err)
	}
}

// TestOpsOwnerRebuiltOnReopen checks that the counts are rebuilt from the
// sessions found on disk, without the ones recovery discards.
func TestOpsOwnerRebuiltOnReopen(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	st, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Sessions that hold a byte, so that they are stored.
	held := func(user, client string) *Session {
		sess := mustOwnerCreate(t, st, root, user, client, 0)
		mustWrite(t, sess, []byte("ab"), 0, 0)
		return sess
	}
	held("alice", "1.2.3.4")
	held("alice", "1.2.3.4")
	broken := held("alice", "1.2.3.4")
	held("", "1.2.3.4")
	held("bob", "")
	key := st.key
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// One session's state is unreadable: recovery discards it.
	editState(t, key, statePathIn(dir, broken.ID()), func(m map[string]any) { m["version"] = 999 })

	st = openStore(t, dir, Options{})
	checkOwned(t, st, map[string]int{"user:alice": 2, "ip:1.2.3.4": 1, "user:bob": 1})
	if st.Len() != 4 {
		t.Fatalf("Len %d after reopening, want 4", st.Len())
	}
	mustOwnerCreate(t, st, root, "alice", "", 3)
	if _, err := ownerCreate(t, st, root, "alice", "", 3); !errors.Is(err, ErrLimitReached) {
		t.Fatalf("after reopening, alice's fourth session with limit 3: err %v, want ErrLimitReached", err)
	}
	if _, err := ownerCreate(t, st, root, "", "1.2.3.4", 1); !errors.Is(err, ErrLimitReached) {
		t.Fatalf("after reopening, the address's second session with limit 1: err %v, want ErrLimitReached", err)
	}
}
