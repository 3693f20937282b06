package caddymodule

import (
	"errors"
	"io/fs"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// createSession answers Create-Session: it negotiates the protocol, checks
// the destination and opens a new session.
func (h *Handler) createSession(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet) {
	proto, ok := protocol.NegotiateProtocol(pkt.Protocols)
	if !ok {
		h.reject(w, r, pkt, protocol.BadRequest("no supported protocol among %v", pkt.Protocols))
		return
	}
	root, rel, perr := h.destination(r)
	if perr != nil {
		h.reject(w, r, pkt, perr)
		return
	}
	if err := session.CheckDestination(root, rel, h.AllowOverwrite); err != nil {
		if perr := destinationAck(err); perr != nil {
			h.reject(w, r, pkt, perr)
		} else {
			h.fail(w, r, pkt, err)
		}
		return
	}
	sess, err := h.store.Create(session.CreateInfo{
		Root:   root,
		Path:   rel,
		URL:    requestURL(r),
		User:   userOf(r),
		Client: remoteIP(r),
	})
	if err != nil {
		h.fail(w, r, pkt, err)
		return
	}
	h.logger.Info("session created",
		zap.String("session_id", string(sess.ID())),
		zap.String("destination", sess.State().Destination()),
		zap.String("remote_ip", remoteIP(r)))
	// Status 200, not 201: MSDN lists 201 Created as a success too, but
	// [MC-BUP] sends BITS-Protocol only with 200, IIS answers 200, and some
	// Windows 10 clients reject a 201.
	ack := protocol.Ack{
		Protocol:               proto,
		SessionID:              sess.ID(),
		AcceptEncodingIdentity: true,
	}
	if h.hostID != "" {
		ack.HostID = h.hostID
		ack.HostIDFallbackTimeout = max(int64(time.Duration(h.HostIDFallbackTimeout)/time.Second), 1)
	}
	protocol.WriteAck(w, ack)
}

// destinationAck maps a destination error to the client's answer, or nil
// for a server-side failure.
func destinationAck(err error) *protocol.Error {
	switch {
	case errors.Is(err, session.ErrDestinationIsDir):
		return protocol.BadRequest("destination is a directory")
	case errors.Is(err, session.ErrDestinationExists):
		// 403, not the 409 MSDN's Ack page lists: [MC-BUP] says 403, and
		// clients retry a 409 as transient, so a permanent condition would
		// be retried until the job's no-progress timeout.
		return protocol.Errorf(http.StatusForbidden, protocol.EAccessDenied, "destination exists and allow_overwrite is off")
	case errors.Is(err, session.ErrInvalidDestination):
		return protocol.BadRequest("%v", err)
	case errors.Is(err, fs.ErrPermission):
		return protocol.Errorf(http.StatusForbidden, protocol.EAccessDenied, "no permission to write the destination: %v", err)
	case errors.Is(err, fs.ErrNotExist):
		return protocol.Errorf(http.StatusNotFound, protocol.ErrorPathNotFound, "upload root does not exist: %v", err)
	}
	return nil
}

// userOf returns the authenticated user of a request, set by Caddy's
// authentication handlers, or "" when there is none.
func userOf(r *http.Request) string {
	v, _ := replacer(r).GetString("http.auth.user.id")
	return v
}
