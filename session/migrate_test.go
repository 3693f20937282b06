package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// oldState returns the state.json of the earlier layout (version 1) of a
// session holding received of total bytes.
func oldState(t *testing.T, id protocol.SessionID, root, rel string, total, received int64, at time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"version": 1, "id": string(id), "root": root, "path": rel,
		"url": "https://example.com/up/" + rel, "user": "alice", "client": "192.0.2.1:1234",
		"created": at, "last_activity": at,
		"total": total, "received": received, "hash": true, "hash_offset": 0, "boot_id": bootID(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMigrateOldLayout opens a store directory of the earlier layout (a
// directory per session, a trash of removed sessions and closed.log):
// the session keeps the bytes it received, its reply and its identity,
// in the flat layout with a sealed state, and goes on to complete.
func TestMigrateOldLayout(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	clock := newFakeClock()
	active := filepath.Join(dir, "active")
	content := randBytes(37, 3000)
	reply := []byte("the application's reply")
	id := protocol.NewSessionID([16]byte{0x42, 1})
	old := filepath.Join(active, id.Bare())
	writeFile(t, filepath.Join(old, "state.json"), oldState(t, id, root, "sub/f.bin", 3000, 1200, clock.Now()))
	writeFile(t, filepath.Join(old, "data"), content[:1200])
	writeFile(t, filepath.Join(old, "reply"), reply)
	writeFile(t, filepath.Join(old, "state.json.tmp"), []byte("half a state"))
	// A session that cannot be migrated: its destination leaves the root.
	bad := protocol.NewSessionID([16]byte{0x42, 2})
	writeFile(t, filepath.Join(active, bad.Bare(), "state.json"), oldState(t, bad, root, "../outside.bin", 3000, 100, clock.Now()))
	writeFile(t, filepath.Join(active, bad.Bare(), "data"), content[:100])
	// A session of another version.
	future := protocol.NewSessionID([16]byte{0x42, 3})
	b := bytes.Replace(oldState(t, future, root, "g.bin", 3000, 100, clock.Now()), []byte(`"version":1`), []byte(`"version":7`), 1)
	writeFile(t, filepath.Join(active, future.Bare(), "state.json"), b)
	// A session being deleted, and the log of closed sessions.
	trashed := protocol.NewSessionID([16]byte{0x42, 4})
	writeFile(t, filepath.Join(dir, "trash", trashed.Bare(), "data"), content)
	closed := protocol.NewSessionID([16]byte{0x42, 5})
	writeFile(t, filepath.Join(dir, "closed.log"), fmt.Appendf(nil, "%s %d\n", closed.Bare(), clock.Now().Unix()))

	store := openStore(t, dir, Options{Now: clock.Now})
	for _, gone := range []string{old, filepath.Join(active, bad.Bare()), filepath.Join(active, future.Bare()), filepath.Join(dir, "trash"), filepath.Join(dir, "closed.log")} {
		mustNotExist(t, gone)
	}
	testutil.AssertFile(t, filepath.Join(active, id.Bare()+".data"), content[:1200])
	testutil.AssertFile(t, filepath.Join(active, id.Bare()+".reply"), reply)
	if st := diskStateAt(t, store.key, statePathIn(dir, id)); st.Version != stateVersion || st.ID != id {
		t.Fatalf("migrated state file: version %d, id %s", st.Version, st.ID)
	}
	for _, s := range []protocol.SessionID{bad, future} {
		if _, err := store.Get(s); !errors.Is(err, ErrNotFound) {
			t.Errorf("session %s that cannot be migrated: Get = %v, want ErrNotFound", s, err)
		}
		mustHaveNoFiles(t, dir, s)
	}
	if _, err := store.Get(closed); !errors.Is(err, ErrClosed) {
		t.Errorf("session closed before the migration: Get = %v, want ErrClosed", err)
	}

	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	st := sess.State()
	if st.Received != 1200 || st.Total != 3000 || st.Root != root || st.Path != "sub/f.bin" || st.User != "alice" ||
		!st.Created.Equal(clock.Now()) || !st.Hash {
		t.Fatalf("migrated session: %+v", st)
	}
	f, err := sess.OpenReply()
	if err != nil {
		t.Fatalf("OpenReply of the migrated session: %v", err)
	}
	f.Close()
	// The client resumes where the earlier version left it.
	if res, err := writeBody(t, sess, rng(2000, 2999, 3000), unreadable{t}); err != nil || res.Action != protocol.Gap || res.Received != 1200 {
		t.Fatalf("fragment past the held bytes: %+v, %v; want Gap at 1200", res, err)
	}
	mustWrite(t, sess, content, 1200, 2999)
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
	if err := commit(t, sess, false); err != nil {
		t.Fatal(err)
	}
	testutil.AssertFile(t, filepath.Join(root, "sub", "f.bin"), content)
	mustNotExist(t, filepath.Join(filepath.Dir(root), "outside.bin"))

	// The migrated session survives the next restart in the new layout.
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{Now: clock.Now})
	if s, err := store.Get(id); err != nil || !s.State().Committed {
		t.Fatalf("migrated session after a restart: %v", err)
	}
}
