package caddymodule

import (
	"errors"
	"io/fs"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// errorTooManySessions is HRESULT_FROM_WIN32(ERROR_TOO_MANY_SESS), the
// answer to a Create-Session beyond max_sessions_per_user.
const errorTooManySessions protocol.HRESULT = 0x80070045

// protocolError returns the protocol answer to err: the *protocol.Error it
// wraps, or the answer a session store error calls for. serverFault is set
// when the failure is the server's own (a full disk, an I/O error), which
// is logged as an error; the answer is then 500, which clients retry.
func protocolError(err error) (perr *protocol.Error, serverFault bool) {
	if errors.As(err, &perr) {
		return perr, false
	}
	switch {
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrClosed):
		return protocol.SessionNotFound("%v", err), false
	case errors.Is(err, session.ErrDataLost):
		// The client starts over with a new session.
		return protocol.SessionNotFound("%v", err), true
	case errors.Is(err, session.ErrStorageUnavailable):
		return protocol.Errorf(http.StatusServiceUnavailable, protocol.HTTPError(http.StatusServiceUnavailable), "%v", err), true
	case errors.Is(err, session.ErrMoved):
		// Another node took the session over; the client's retry is
		// forwarded to it.
		return protocol.Errorf(http.StatusServiceUnavailable, protocol.HTTPError(http.StatusServiceUnavailable), "%v", err), false
	case errors.Is(err, session.ErrStoreClosed):
		// The server is shutting down or reloading: try again.
		return protocol.Errorf(http.StatusServiceUnavailable, protocol.HTTPError(http.StatusServiceUnavailable), "%v", err), false
	case errors.Is(err, session.ErrTotalChanged):
		return protocol.BadRequest("%v", err), false
	case errors.Is(err, session.ErrDestinationIsDir):
		return protocol.BadRequest("destination is a directory"), false
	case errors.Is(err, session.ErrDestinationExists):
		// 403, not the 409 MSDN's Ack page lists: [MC-BUP] says 403, and
		// clients retry a 409 as transient, so a permanent condition would
		// be retried until the job's no-progress timeout.
		return protocol.Errorf(http.StatusForbidden, protocol.EAccessDenied, "destination exists and allow_overwrite is off"), false
	case errors.Is(err, session.ErrInvalidDestination), errors.Is(err, session.ErrInvalidName):
		// A name the file system refuses is the client's to change; a
		// 500 would be retried forever.
		return protocol.BadRequest("%v", err), false
	case errors.Is(err, fs.ErrPermission):
		return protocol.Errorf(http.StatusForbidden, protocol.EAccessDenied, "no permission to write the destination: %v", err), false
	case errors.Is(err, fs.ErrNotExist):
		return protocol.Errorf(http.StatusNotFound, protocol.ErrorPathNotFound, "upload root does not exist: %v", err), false
	case session.IsDiskFull(err):
		return protocol.Errorf(http.StatusInternalServerError, protocol.ErrorDiskFull, "%v", err), true
	}
	return protocol.Errorf(http.StatusInternalServerError, protocol.EFail, "%v", err), true
}

// answer answers a request that failed with err, and logs why: client
// mistakes and refusals at info, server faults at error.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, err error) {
	perr, fault := protocolError(err)
	level, msg := zapcore.InfoLevel, "rejected BITS request"
	if fault {
		level, msg = zapcore.ErrorLevel, "BITS request failed"
	}
	if c := h.logger.Check(level, msg); c != nil {
		fields := []zap.Field{
			zap.String("reason", perr.Msg),
			zap.Int("status", perr.Status),
			zap.String("error_code", perr.Code.String()),
			zap.String("error_name", perr.Code.Name()),
			zap.String("error_context", perr.Context.String()),
			zap.String("packet_type", packetTypeOf(r, pkt)),
			zap.String("uri", r.RequestURI),
			zap.String("remote_ip", remoteIP(r)),
		}
		if pkt != nil && pkt.SessionID != "" {
			fields = append(fields, zap.String("session_id", pkt.SessionID.Wire()))
		}
		c.Write(fields...)
	}
	h.writeAck(w, r, pkt, protocol.ErrorAck(perr))
}
