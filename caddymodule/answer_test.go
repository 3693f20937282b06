package caddymodule

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"syscall"
	"testing"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// TestProtocolError checks the answer every error of a request gets: the
// client's protocol errors as they are, the session store's mapped to
// their protocol answers, and anything else a retryable 500.
func TestProtocolError(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("handling fragment: %w", err) }
	for _, tc := range []struct {
		err    error
		status int
		code   protocol.HRESULT
		fault  bool
	}{
		{protocol.BadRequest("no"), 400, protocol.EInvalidArg, false},
		{wrap(protocol.Errorf(409, protocol.EFail, "x").App()), 409, protocol.EFail, false},
		{wrap(session.ErrNotFound), 500, protocol.BGSessionNotFound, false},
		{wrap(session.ErrClosed), 500, protocol.BGSessionNotFound, false},
		{wrap(session.ErrStoreClosed), 503, protocol.HTTPError(503), false},
		{wrap(session.ErrStorageUnavailable), 503, protocol.HTTPError(503), true},
		{wrap(session.ErrDataLost), 500, protocol.BGSessionNotFound, true},
		{wrap(session.ErrTotalChanged), 400, protocol.EInvalidArg, false},
		{wrap(session.ErrDestinationIsDir), 400, protocol.EInvalidArg, false},
		{wrap(session.ErrDestinationExists), 403, protocol.EAccessDenied, false},
		{wrap(session.ErrInvalidDestination), 400, protocol.EInvalidArg, false},
		{wrap(session.ErrInvalidName), 400, protocol.EInvalidArg, false},
		{wrap(fs.ErrPermission), 403, protocol.EAccessDenied, false},
		{wrap(fs.ErrNotExist), 404, protocol.ErrorPathNotFound, false},
		{wrap(syscall.ENOSPC), 500, protocol.ErrorDiskFull, true},
		{wrap(syscall.EDQUOT), 500, protocol.ErrorDiskFull, true},
		{errors.New("disk on fire"), 500, protocol.EFail, true},
	} {
		perr, fault := protocolError(tc.err)
		if perr.Status != tc.status || perr.Code != tc.code || fault != tc.fault || perr.Context != protocol.ContextRemoteFile && tc.status != 409 {
			t.Errorf("%v: %d %s (context %s) fault %v; want %d %s fault %v", tc.err, perr.Status, perr.Code, perr.Context, fault, tc.status, tc.code, tc.fault)
		}
	}
	if perr, _ := protocolError(protocol.Errorf(http.StatusBadGateway, protocol.HTTPError(502), "x").App()); perr.Context != protocol.ContextRemoteApplication {
		t.Errorf("an application's error lost its context: %s", perr.Context)
	}
}
