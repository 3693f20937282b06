package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestErrorIs(t *testing.T) {
	notFound := fmt.Errorf("upload: %w", (&Ack{Status: 500, Code: protocol.BGSessionNotFound, Context: protocol.ContextRemoteFile}).Err(protocol.PacketFragment))
	if !errors.Is(notFound, ErrSessionNotFound) {
		t.Error("BG_E_SESSION_NOT_FOUND does not match ErrSessionNotFound")
	}
	for _, other := range []error{ErrTooLarge, ErrAccessDenied, ErrUnauthorized, io.EOF, (*Error)(nil)} {
		if errors.Is(notFound, other) {
			t.Errorf("BG_E_SESSION_NOT_FOUND matches %v", other)
		}
	}
	// Any HRESULT, through an Error with only a Code.
	full := (&Ack{Status: 500, Code: protocol.ErrorDiskFull, Context: protocol.ContextRemoteFile}).Err(protocol.PacketFragment)
	if !errors.Is(full, &Error{Code: 0x80070070}) || !errors.Is(full, ErrDiskFull) || errors.Is(full, &Error{Code: 0x80070071}) {
		t.Error("ERROR_DISK_FULL not matched by its HRESULT")
	}
	// Bare HTTP failures carry BG_E_HTTP_ERROR_<status>.
	for st, want := range map[int]error{401: ErrUnauthorized, 403: ErrForbidden, 404: ErrNotFound} {
		err := (&Ack{Status: st}).Err(protocol.PacketPing)
		if !errors.Is(err, want) {
			t.Errorf("bare %d does not match %v", st, want)
		}
	}
	// A 403 of the BITS server carries E_ACCESSDENIED instead.
	denied := (&Ack{Status: 403, Code: protocol.EAccessDenied, Context: protocol.ContextRemoteFile}).Err(protocol.PacketCreateSession)
	if !errors.Is(denied, ErrAccessDenied) || errors.Is(denied, ErrForbidden) {
		t.Error("403 E_ACCESSDENIED matched wrongly")
	}
	if got := ErrSessionNotFound.Error(); got != "BG_E_SESSION_NOT_FOUND (0x8020001F)" {
		t.Errorf("sentinel Error() = %q", got)
	}
	if got := ErrTooManySessions.Error(); got != "ERROR_TOO_MANY_SESS (0x80070045)" {
		t.Errorf("sentinel Error() = %q", got)
	}
}

// TestErrorIsFromOperations matches the errors that operations return.
func TestErrorIsFromOperations(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	err := c.Cancel(context.Background(), f.url("/up/x"), protocol.SessionID("{00000000-0000-4000-8000-000000000001}"))
	if !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("Cancel of an unknown session: %v", err)
	}
	_, err = c.Upload(context.Background(), f.url("/up/short"), &shortReader{}, 10, nil)
	if !errors.Is(err, ErrLocalFileChanged) {
		t.Errorf("short source: %v", err)
	}
	f2 := newFake(t)
	f2.user, f2.pass = "alice", "right"
	c.Username, c.Password = "alice", "wrong"
	_, err = c.Upload(context.Background(), f2.url("/up/auth"), &shortReader{}, 3, nil)
	if !errors.Is(err, ErrUnauthorized) || f2.count("401") != 1 {
		t.Errorf("wrong password: %v after %d attempts", err, f2.count("401"))
	}
}

// shortReader has no bytes at all.
type shortReader struct{}

func (*shortReader) ReadAt(p []byte, off int64) (int, error) { return 0, io.EOF }
