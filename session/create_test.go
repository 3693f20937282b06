package session

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestCreate(t *testing.T) {
	clock := newFakeClock()
	store := openStore(t, "", Options{Now: clock.Now})
	root := t.TempDir()
	info := CreateInfo{
		Root: root, Path: "dir/sub/file.bin", URL: "https://example.com/up/dir/sub/file.bin",
		User: "alice", Client: "192.0.2.7:4444",
	}
	sess, err := store.Create(info)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	id := sess.ID()
	parsed, err := protocol.ParseSessionID(string(id))
	if err != nil || parsed != id {
		t.Fatalf("id %q is not canonical: ParseSessionID = %q, %v", id, parsed, err)
	}
	if strings.ToLower(string(id)) != string(id) {
		t.Errorf("id %q is not lower case", id)
	}
	if id[15] != '4' {
		t.Errorf("id %q is not a version 4 GUID", id)
	}

	// A new session costs nothing on disk: no file of its own, no line of
	// the journal. Its id lets Revive make it again after a crash.
	active := filepath.Join(store.Dir(), "active")
	mustHaveNoFiles(t, store.Dir(), id)
	if got := dataPath(sess); got != filepath.Join(active, id.Bare()+".data") {
		t.Errorf("data path = %s, want %s", got, filepath.Join(active, id.Bare()+".data"))
	}
	if got := sess.ReplyPath(); got != filepath.Join(active, id.Bare()+".reply") {
		t.Errorf("ReplyPath = %s", got)
	}
	if js := journalState(t, store.Dir(), store.key, id); js != nil {
		t.Fatalf("the journal holds a state of the new session: %+v", js)
	}

	check := func(name string, st State) {
		t.Helper()
		if st.ID != id || st.Root != root || st.Path != info.Path || st.URL != info.URL ||
			st.User != info.User || st.Client != info.Client {
			t.Errorf("%s: identity fields = %+v, want %+v", name, st, info)
		}
		if st.Total != -1 || st.Received != 0 {
			t.Errorf("%s: Total, Received = %d, %d; want -1, 0", name, st.Total, st.Received)
		}
		if !st.Created.Equal(clock.Now()) || !st.LastActivity.Equal(clock.Now()) {
			t.Errorf("%s: Created, LastActivity = %v, %v; want %v", name, st.Created, st.LastActivity, clock.Now())
		}
		if st.Complete() || st.Finished || st.Committed || st.Digest != nil {
			t.Errorf("%s: new session is complete/finished/committed/digested: %+v", name, st)
		}
		if want := filepath.Join(root, "dir", "sub", "file.bin"); st.DestinationPath() != want {
			t.Errorf("%s: DestinationPath = %s, want %s", name, st.DestinationPath(), want)
		}
		if want := (Destination{Root: root, Path: info.Path}); st.Destination() != want {
			t.Errorf("%s: Destination = %+v, want %+v", name, st.Destination(), want)
		}
	}
	check("State()", sess.State())

	// After a crash, the client's next packet revives it: same identity,
	// created in the same hour.
	other := openStore(t, "", Options{Now: clock.Now})
	other.key = store.key
	revived, err := other.Revive(id, info)
	if err != nil {
		t.Fatalf("Revive: %v", err)
	}
	rs := revived.State()
	if rs.ID != id || rs.Root != root || rs.Path != info.Path || rs.User != info.User || rs.Total != -1 || rs.Received != 0 {
		t.Errorf("revived state %+v", rs)
	}
	if hour := clock.Now().Truncate(time.Hour); !rs.Created.Equal(hour) {
		t.Errorf("revived Created = %v, want the hour %v", rs.Created, hour)
	}

	got, err := store.Get(id)
	if err != nil || got != sess {
		t.Fatalf("Get(%s) = %p, %v; want %p", id, got, err, sess)
	}
	// Get takes the canonical id; a client's upper-case wire form is
	// canonicalised by ParseSessionID first.
	wire, err := protocol.ParseSessionID(id.Wire())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.Get(wire); err != nil || got != sess {
		t.Fatalf("Get(parsed wire id) = %p, %v", got, err)
	}
	if store.Len() != 1 {
		t.Errorf("Len = %d, want 1", store.Len())
	}
	if _, ok := sess.Finished(); ok {
		t.Error("new session reports Finished")
	}
}

func TestCreateUniqueIDs(t *testing.T) {
	store := openStore(t, "", Options{})
	root := t.TempDir()
	const n = 200
	seen := make(map[protocol.SessionID]bool)
	for i := 0; i < n; i++ {
		sess := create(t, store, root, "f.bin")
		if seen[sess.ID()] {
			t.Fatalf("duplicate id %s", sess.ID())
		}
		seen[sess.ID()] = true
	}
	if store.Len() != n {
		t.Errorf("Len = %d, want %d", store.Len(), n)
	}
	// New sessions are in memory only (see Revive).
	ids, err := Stored(store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Errorf("%d sessions on disk, want none", len(ids))
	}
}

func TestCreateInvalid(t *testing.T) {
	store := openStore(t, "", Options{})
	root := t.TempDir()
	tests := []struct {
		name string
		info CreateInfo
		want error
	}{
		{"relative root", CreateInfo{Root: "uploads", Path: "f.bin"}, ErrInvalidDestination},
		{"dot-relative root", CreateInfo{Root: "./uploads", Path: "f.bin"}, ErrInvalidDestination},
		{"empty root", CreateInfo{Root: "", Path: "f.bin"}, ErrInvalidDestination},
		{"unclean root", CreateInfo{Root: root + "/", Path: "f.bin"}, ErrInvalidDestination},
		{"empty path", CreateInfo{Root: root, Path: ""}, ErrInvalidDestination},
		{"absolute path", CreateInfo{Root: root, Path: "/f.bin"}, ErrInvalidDestination},
		{"parent name", CreateInfo{Root: root, Path: "../f.bin"}, ErrInvalidDestination},
		{"name of 256 bytes", CreateInfo{Root: root, Path: "a/" + strings.Repeat("n", 256)}, ErrInvalidName},
		{"name not UTF-8", CreateInfo{Root: root, Path: "f\xff.bin"}, ErrInvalidName},
		{"control character", CreateInfo{Root: root, Path: "f\x01.bin"}, ErrInvalidName},
		{"backslash", CreateInfo{Root: root, Path: `a\b.bin`}, ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := store.Create(tt.info)
			if err == nil {
				t.Fatalf("Create(%+v) = %s, want an error", tt.info, sess.ID())
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Create(%+v) = %v, want %v", tt.info, err, tt.want)
			}
			if ids, err := Stored(store.Dir()); err != nil || len(ids) != 0 {
				t.Errorf("sessions left behind: %v, %v", ids, err)
			}
			if store.Len() != 0 {
				t.Errorf("Len = %d", store.Len())
			}
		})
	}
}

func TestOpenRelativeDir(t *testing.T) {
	if s, err := Open("relative/dir", Options{}); err == nil {
		_ = s.Close()
		t.Fatal("Open with a relative directory succeeded")
	}
	mustNotExist(t, "relative")
}

func TestOpenLayout(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	if store.Dir() != dir {
		t.Errorf("Dir = %s, want %s", store.Dir(), dir)
	}
	mustExist(t, filepath.Join(dir, "lock"))
	mustExist(t, filepath.Join(dir, "journal.log"))
	mustNotExist(t, filepath.Join(dir, "closed.log"))
	if key, err := os.ReadFile(filepath.Join(dir, "key")); err != nil || len(key) != 32 {
		t.Errorf("store key: %d bytes, %v; want 32", len(key), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "active")); err != nil || !fi.IsDir() {
		t.Fatalf("active directory: %v", err)
	}
	if store.Timeout() != DefaultTimeout {
		t.Errorf("Timeout = %v, want %v", store.Timeout(), DefaultTimeout)
	}
	store.SetTimeout(time.Hour)
	if store.Timeout() != time.Hour {
		t.Errorf("Timeout after SetTimeout(1h) = %v", store.Timeout())
	}
	store.SetTimeout(0)
	if store.Timeout() != DefaultTimeout {
		t.Errorf("Timeout after SetTimeout(0) = %v, want the default", store.Timeout())
	}
}

func TestCreateAfterClose(t *testing.T) {
	store := openStore(t, "", Options{})
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := store.Create(CreateInfo{Root: t.TempDir(), Path: "f.bin"})
	if !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("Create after Close: %v, want ErrStoreClosed", err)
	}
	if n := len(entries(t, filepath.Join(store.Dir(), "active"))); n != 0 {
		t.Errorf("Create after Close left %d files", n)
	}
	if ids, err := Stored(store.Dir()); err != nil || len(ids) != 0 {
		t.Errorf("Create after Close left sessions %v, %v", ids, err)
	}
}

func TestGetUnknown(t *testing.T) {
	store := openStore(t, "", Options{})
	id := protocol.NewSessionID([16]byte{1, 2, 3})
	if _, err := store.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown = %v, want ErrNotFound", err)
	}
	if _, err := store.Acquire(t.Context(), id, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Acquire unknown = %v, want ErrNotFound", err)
	}
	if _, err := store.Remove(t.Context(), id, RemovedClosed); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove unknown = %v, want ErrNotFound", err)
	}
}

func TestRemoveReasonString(t *testing.T) {
	for r, want := range map[RemoveReason]string{
		RemovedClosed: "closed", RemovedCancelled: "cancelled", RemovedReaped: "reaped", RemoveReason(42): "unknown",
	} {
		if got := r.String(); got != want {
			t.Errorf("RemoveReason(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}
