package caddymodule_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// opsDiskFull is the Ack of a request refused for lack of disk space.
var opsDiskFull = ack{status: 500, code: protocol.ErrorDiskFull}

// opsDataFile checks that a session's data file holds exactly want.
func opsDataFile(t *testing.T, srv *server, id protocol.SessionID, want []byte) {
	t.Helper()
	path := sessionFile(srv.SessionDir, id, "data")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(want)) {
		t.Fatalf("data file holds %d bytes, want %d", fi.Size(), len(want))
	}
	assertFile(t, path, want)
}

// TestOpsMinFreeSpace puts root and session_dir on an 8 MiB tmpfs with
// min_free_space 2MiB: a fragment that would cross the reserve and a
// Create-Session below it are refused with ERROR_DISK_FULL before
// anything is written, and the upload resumes once space is freed.
func TestOpsMinFreeSpace(t *testing.T) {
	const MiB = 1 << 20
	fs := testutil.MountTmpfs(t, "8m")
	srv := opsServer(t, "min_free_space 2MiB", "")
	srv.Root = filepath.Join(fs, "root")
	srv.SessionDir = filepath.Join(fs, "sessions")
	srv.load()
	c := newClient()
	c.FragmentSize = MiB

	// 2.5 MiB of filler leaves about 5.5 MiB.
	testutil.WriteFiller(t, filepath.Join(fs, "filler1"), 5*MiB/2)
	data := randomBytes(t, 5*MiB)
	s := create(t, c, srv.URL("/guard/big.bin"))
	for i := int64(0); i < 3; i++ {
		checkAck(t, fragment(t, s, data, i*MiB, (i+1)*MiB-1), ack{status: 200, headers: received(itoa(int((i + 1) * MiB)))})
	}
	// About 2.5 MiB free: one more MiB would leave less than 2 MiB.
	if free := testutil.FreeSpace(t, fs); free < 2*MiB+MiB/4 || free > 3*MiB {
		t.Fatalf("%d bytes free, the test expects about 2.5 MiB", free)
	}
	checkAck(t, fragment(t, s, data, 3*MiB, 4*MiB-1), opsDiskFull)
	checkAck(t, fragment(t, s, data, 3*MiB, 5*MiB-1), opsDiskFull)
	opsDataFile(t, srv, s.ID, data[:3*MiB])
	// A retransmission of held bytes needs no space and is acknowledged.
	checkAck(t, fragment(t, s, data, 2*MiB, 3*MiB-1), ack{status: 200, headers: received(itoa(3 * MiB))})
	// A Create-Session needs no space yet: above the reserve it succeeds.
	extra := create(t, c, srv.URL("/guard/extra.bin"))

	// Below the reserve, Create-Session is refused too, and leaves nothing.
	testutil.WriteFiller(t, filepath.Join(fs, "filler2"), MiB)
	if free := testutil.FreeSpace(t, fs); free >= 2*MiB {
		t.Fatalf("%d bytes free, want less than 2 MiB", free)
	}
	before := sessionDirs(t, srv.SessionDir)
	checkAck(t, opsCreateAck(t, c, srv.URL("/guard/refused.bin")), opsDiskFull)
	if after := sessionDirs(t, srv.SessionDir); len(after) != len(before) {
		t.Fatalf("session directories %v after a refused Create-Session, want %v", after, before)
	}
	checkAck(t, fragment(t, extra, data, 0, 0), opsDiskFull)
	opsDataFile(t, srv, s.ID, data[:3*MiB])

	// Space returns: the same session goes on and completes byte-exact.
	for _, f := range []string{"filler1", "filler2"} {
		if err := os.Remove(filepath.Join(fs, f)); err != nil {
			t.Fatal(err)
		}
	}
	checkAck(t, fragment(t, s, data, 3*MiB, 4*MiB-1), ack{status: 200, headers: received(itoa(4 * MiB))})
	checkAck(t, fragment(t, s, data, 4*MiB, 5*MiB-1), ack{status: 200, headers: received(itoa(5 * MiB))})
	assertFile(t, filepath.Join(srv.Root, "guard", "big.bin"), data)
	create(t, c, srv.URL("/guard/later.bin"))
}

// TestOpsDiskFull fills the file system of root and session_dir without
// min_free_space: the fragment that cannot be stored gets ERROR_DISK_FULL,
// the bytes stored before stay intact, and the upload resumes once space
// is freed.
func TestOpsDiskFull(t *testing.T) {
	const MiB = 1 << 20
	fs := testutil.MountTmpfs(t, "8m")
	srv := opsServer(t, "", "")
	srv.Root = filepath.Join(fs, "root")
	srv.SessionDir = filepath.Join(fs, "sessions")
	srv.load()
	c := newClient()

	data := randomBytes(t, 3*MiB)
	s := create(t, c, srv.URL("/full/big.bin"))
	checkAck(t, fragment(t, s, data, 0, MiB-1), ack{status: 200, headers: received(itoa(MiB))})
	other := create(t, c, srv.URL("/full/other.bin"))

	testutil.FillUp(t, filepath.Join(fs, "filler"))
	checkAck(t, fragment(t, s, data, MiB, 2*MiB-1), opsDiskFull)
	opsDataFile(t, srv, s.ID, data[:MiB])
	checkAck(t, fragment(t, s, data, MiB, 3*MiB-1), opsDiskFull)
	opsDataFile(t, srv, s.ID, data[:MiB])
	// The first fragment of another session, and a new session, fail the
	// same way; the refused Create-Session leaves nothing behind.
	small := randomBytes(t, 1000)
	checkAck(t, fragment(t, other, small, 0, 999), opsDiskFull)
	before := sessionDirs(t, srv.SessionDir)
	checkAck(t, opsCreateAck(t, c, srv.URL("/full/new.bin")), opsDiskFull)
	if after := sessionDirs(t, srv.SessionDir); len(after) != len(before) {
		t.Errorf("session directories %v after a failed Create-Session, want %v", after, before)
	}
	// Held bytes are still acknowledged.
	checkAck(t, fragment(t, s, data, 0, MiB-1), ack{status: 200, headers: received(itoa(MiB))})

	if err := os.Remove(filepath.Join(fs, "filler")); err != nil {
		t.Fatal(err)
	}
	checkAck(t, fragment(t, s, data, MiB, 2*MiB-1), ack{status: 200, headers: received(itoa(2 * MiB))})
	checkAck(t, fragment(t, s, data, 2*MiB, 3*MiB-1), ack{status: 200, headers: received(itoa(3 * MiB))})
	assertFile(t, filepath.Join(srv.Root, "full", "big.bin"), data)
	checkAck(t, fragment(t, other, small, 0, 999), ack{status: 200, headers: received("1000")})
	assertFile(t, filepath.Join(srv.Root, "full", "other.bin"), small)
}

// TestOpsMinFreeSpaceEitherFileSystem checks that min_free_space guards
// the file system of root and that of session_dir, each on its own.
func TestOpsMinFreeSpaceEitherFileSystem(t *testing.T) {
	const MiB = 1 << 20
	for _, onTmpfs := range []string{"root", "session_dir"} {
		t.Run(onTmpfs, func(t *testing.T) {
			fs := testutil.MountTmpfs(t, "8m")
			srv := opsServer(t, "min_free_space 2MiB", "")
			if onTmpfs == "root" {
				srv.Root = filepath.Join(fs, "root")
			} else {
				srv.SessionDir = filepath.Join(fs, "sessions")
			}
			srv.load()
			c := newClient()
			data := randomBytes(t, MiB)
			s := create(t, c, srv.URL("/either/a.bin"))

			testutil.WriteFiller(t, filepath.Join(fs, "filler"), 7*MiB)
			checkAck(t, opsCreateAck(t, c, srv.URL("/either/b.bin")), opsDiskFull)
			checkAck(t, fragment(t, s, data, 0, MiB-1), opsDiskFull)
			if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 1 || dirs[0] != s.ID.Bare() {
				t.Fatalf("session directories %v, want only %s", dirs, s.ID.Bare())
			}

			if err := os.Remove(filepath.Join(fs, "filler")); err != nil {
				t.Fatal(err)
			}
			checkAck(t, fragment(t, s, data, 0, MiB-1), ack{status: 200, headers: received(itoa(MiB))})
			assertFile(t, filepath.Join(srv.Root, "either", "a.bin"), data)
			create(t, c, srv.URL("/either/b.bin"))
		})
	}
}
