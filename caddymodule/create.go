package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// createSession answers Create-Session: it negotiates the protocol, checks
// the destination, the user's session limit and the disk reserve, and
// opens a new session.
func (h *Handler) createSession(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet) {
	proto, ok := protocol.NegotiateProtocol(pkt.Protocols)
	if !ok {
		h.answer(w, r, pkt, protocol.BadRequest("no supported protocol among %v", pkt.Protocols))
		return
	}
	root, rel, err := h.destination(r)
	if err != nil {
		h.answer(w, r, pkt, err)
		return
	}
	dest := session.Destination{Root: root, Path: rel}
	replacer(r).Set(placeholderDestination, dest.String())
	if err := h.store.Storage().CheckDestination(r.Context(), dest, h.AllowOverwrite); err != nil {
		h.answer(w, r, pkt, err)
		return
	}
	if err := h.checkSpace(root, 0); err != nil {
		h.answer(w, r, pkt, err)
		return
	}
	sess, err := h.store.Create(h.createInfo(r, root, rel))
	if errors.Is(err, session.ErrLimitReached) {
		err = h.tooManySessions()
	}
	if err != nil {
		h.answer(w, r, pkt, err)
		return
	}
	if n := h.store.shared; n != nil {
		if err := n.created(r.Context(), r, sess.ID()); err != nil {
			_ = h.store.Forget(sess.ID())
			h.answer(w, r, pkt, err)
			return
		}
	}
	st := sess.State()
	describe(r, st)
	h.logger.Info("session created",
		zap.String("session_id", st.ID.Wire()),
		zap.String("destination", st.DestinationPath()),
		zap.String("user", st.User),
		zap.String("remote_ip", st.Client))
	h.obs.count(metrics.sessionsCreated.Inc)
	h.obs.emit(eventSessionCreated, func() map[string]any {
		return map[string]any{
			"session_id":  st.ID.Wire(),
			"destination": st.DestinationPath(),
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

// createInfo describes the session a request creates (or revives).
func (h *Handler) createInfo(r *http.Request, root, rel string) session.CreateInfo {
	return session.CreateInfo{
		Root:        root,
		Path:        rel,
		URL:         requestURL(r).String(),
		User:        userOf(r),
		Client:      remoteIP(r),
		MaxPerOwner: max(h.MaxSessionsPerUser, 0), // negative: off
		// Hashing costs CPU on every byte; only a notification needs the
		// digest, and it gets it without reading the file again.
		Digest: h.Notify != nil,
	}
}

// tooManySessions is the answer to a session beyond
// max_sessions_per_user.
func (h *Handler) tooManySessions() error {
	return protocol.Errorf(http.StatusServiceUnavailable, errorTooManySessions,
		"max_sessions_per_user %d reached", h.MaxSessionsPerUser)
}

// checkSpace enforces min_free_space: the file systems of the session
// directory and of the root must keep that much free after need more
// bytes are written. Without min_free_space, a Create-Session (need 0)
// is still refused when the session directory's file system is full:
// no upload could be received there.
func (h *Handler) checkSpace(root string, need int64) error {
	if h.MinFreeSpace <= 0 {
		if need > 0 {
			return nil
		}
		if free, err := session.FreeSpace(h.store.Dir()); err == nil && free == 0 {
			return protocol.Errorf(http.StatusInternalServerError, protocol.ErrorDiskFull,
				"the file system of %s is full", h.store.Dir())
		}
		return nil
	}
	dirs := []string{h.store.Dir()}
	if h.storage.Local() {
		dirs = append(dirs, root)
	}
	for _, dir := range dirs {
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

// userOf returns the authenticated user of a request, set by Caddy's
// authentication handlers, or "" when there is none.
func userOf(r *http.Request) string {
	v, _ := replacer(r).GetString("http.auth.user.id")
	return v
}
