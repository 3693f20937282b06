package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// baseline is the reference server of the benchmarks: a bare net/http
// handler that answers just enough of the BITS protocol for a client to
// upload, writes each fragment at its offset with no checks at all, and
// fsyncs each completed file once before renaming it into place (unless
// noFsync is set). That fsync is the least any server must do to keep the
// bytes of a committed upload. It does not make the new name durable on
// every file system: on ext4 without a journal, for one, the rename may
// still be lost in a power cut until the kernel writes the directory back.
// With dirFsync set it also fsyncs the destination directory after the
// rename, which is what keeping the name takes there (and what bits_upload
// does on such a file system), so that variant is the ceiling for a server
// that loses nothing anywhere.
type baseline struct {
	dir      string
	noFsync  bool
	dirFsync bool

	mu       sync.Mutex
	sessions map[string]string // id → destination
}

func (b *baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["BITS-Packet-Type"] = []string{"Ack"}
	h["Content-Length"] = []string{"0"}
	switch strings.ToLower(r.Header.Get("BITS-Packet-Type")) {
	case "create-session":
		var raw [16]byte
		_, _ = rand.Read(raw[:])
		id := "{" + hex.EncodeToString(raw[:4]) + "-" + hex.EncodeToString(raw[4:6]) + "-" +
			hex.EncodeToString(raw[6:8]) + "-" + hex.EncodeToString(raw[8:10]) + "-" + hex.EncodeToString(raw[10:]) + "}"
		b.mu.Lock()
		b.sessions[id] = filepath.Join(b.dir, "root", filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
		b.mu.Unlock()
		h["BITS-Protocol"] = []string{"{7df0354d-249b-430f-820d-3d2a9bef4931}"}
		h["BITS-Session-Id"] = []string{id}
	case "fragment":
		id := r.Header.Get("BITS-Session-Id")
		var first, last, total int64
		if _, err := fmt.Sscanf(r.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &total); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		dest, ok := b.sessions[id]
		b.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		tmp := filepath.Join(b.dir, "tmp", strings.Trim(id, "{}"))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE, 0o644)
		if err == nil {
			_, err = io.Copy(io.NewOffsetWriter(f, first), r.Body)
		}
		if err == nil && last+1 == total {
			if !b.noFsync {
				err = f.Sync()
			}
			if err == nil {
				err = os.MkdirAll(filepath.Dir(dest), 0o755)
			}
			if err == nil {
				err = os.Rename(tmp, dest)
			}
			if err == nil && b.dirFsync {
				err = syncDir(filepath.Dir(dest))
			}
		}
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		h["BITS-Received-Content-Range"] = []string{fmt.Sprint(last + 1)}
	case "close-session", "cancel-session":
		b.mu.Lock()
		delete(b.sessions, r.Header.Get("BITS-Session-Id"))
		b.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

// syncDir fsyncs the directory dir.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// newBaseline makes the baseline's directories under dir (its root and
// tmp) and returns its handler.
func newBaseline(dir string, noFsync, dirFsync bool) (*baseline, error) {
	for _, d := range []string{"root", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	return &baseline{dir: dir, noFsync: noFsync, dirFsync: dirFsync, sessions: make(map[string]string)}, nil
}

// serveBaseline runs the baseline server until the process is killed.
func serveBaseline(addr, dir string, noFsync, dirFsync bool) error {
	b, err := newBaseline(dir, noFsync, dirFsync)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(l, b)
}
