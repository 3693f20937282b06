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

// errorTooManySessions is HRESULT_FROM_WIN32(ERROR_TOO_MANY_SESS), the
// answer to a Create-Session beyond max_sessions_per_user.
const errorTooManySessions protocol.HRESULT = 0x80070045

// createSession answers Create-Session: it negotiates the protocol, checks
// the destination, the user's session limit and the disk reserve, and
// opens a new session.
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
	replacer(r).Set(placeholderDestination, session.State{Root: root, Path: rel}.Destination())
	if err := session.CheckDestination(root, rel, h.AllowOverwrite); err != nil {
		if perr := destinationAck(err); perr != nil {
			h.reject(w, r, pkt, perr)
		} else {
			h.fail(w, r, pkt, err)
		}
		return
	}
	if perr := h.checkSpace(root, 0); perr != nil {
		h.reject(w, r, pkt, perr)
		return
	}
	sess, err := h.store.Create(session.CreateInfo{
		Root:        root,
		Path:        rel,
		URL:         requestURL(r).String(),
		User:        userOf(r),
		Client:      remoteIP(r),
		MaxPerOwner: h.MaxSessionsPerUser,
		// Hashing costs CPU on every byte; only a notification needs the
		// digest, and it gets it without reading the file again.
		Digest: h.Notify != nil,
	})
	if errors.Is(err, session.ErrLimitReached) {
		h.reject(w, r, pkt, protocol.Errorf(http.StatusServiceUnavailable, errorTooManySessions,
			"max_sessions_per_user %d reached", h.MaxSessionsPerUser))
		return
	}
	if err != nil {
		h.fail(w, r, pkt, err)
		return
	}
	st := sess.State()
	describe(r, st)
	h.logger.Info("session created",
		zap.String("session_id", st.ID.Wire()),
		zap.String("destination", st.Destination()),
		zap.String("user", st.User),
		zap.String("remote_ip", st.Client))
	h.obs.count(metrics.sessionsCreated.Inc)
	h.obs.emit(eventSessionCreated, func() map[string]any {
		return map[string]any{
			"session_id":  st.ID.Wire(),
			"destination": st.Destination(),
			"url":         st.URL,
			"user":        st.User,
			"remote_ip":   st.Client,
		}
	})
	// Status 200, not 201: MSDN lists 201 Created as a success too, but
	// [MC-BUP] sends BITS-Protocol only with 200, IIS answers 200, and some
	// Windows 10 clients reject a 201.
	ack := protocol.Ack{
		Protocol:               proto,
		SessionID:              st.ID,
		AcceptEncodingIdentity: true,
	}
	if h.hostID != "" {
		ack.HostID = h.hostID
		ack.HostIDFallbackTimeout = max(int64(time.Duration(h.HostIDFallbackTimeout)/time.Second), 1)
	}
	h.writeAck(w, r, pkt, ack)
}

// checkSpace enforces min_free_space: the file systems of the session
// directory and of the root must keep that much free after need more
// bytes are written.
func (h *Handler) checkSpace(root string, need int64) *protocol.Error {
	if h.MinFreeSpace <= 0 {
		return nil
	}
	for _, dir := range []string{h.store.Dir(), root} {
		free, err := session.FreeSpace(dir)
		if err != nil || free < 0 {
			continue
		}
		if free-need < h.MinFreeSpace {
			return protocol.Errorf(http.StatusInternalServerError, protocol.ErrorDiskFull,
				"%d bytes free on the file system of %s, %d more wanted, min_free_space is %d", free, dir, need, h.MinFreeSpace)
		}
	}
	return nil
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
