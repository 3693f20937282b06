package caddymodule

import (
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// ServeHTTP answers BITS_POST requests with BITS Acks, serves the replies
// of upload-reply sessions, and passes every other request to the next
// handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Method != protocol.Method {
		if id, ok := replyID(r); ok {
			return h.serveReply(w, r, id)
		}
		return next.ServeHTTP(w, r)
	}
	pkt, perr := protocol.ParseRequest(r)
	if perr != nil {
		h.reject(w, r, nil, perr)
		return nil
	}
	repl := replacer(r)
	repl.Set(placeholderPacketType, pkt.Type.String())
	if pkt.SessionID != "" {
		repl.Set(placeholderSessionID, pkt.SessionID.Wire())
	}
	switch pkt.Type {
	case protocol.PacketPing:
		h.writeAck(w, r, pkt, protocol.Ack{})
	case protocol.PacketCreateSession:
		h.createSession(w, r, pkt)
	case protocol.PacketFragment:
		h.fragment(w, r, pkt)
	case protocol.PacketCloseSession:
		h.removeSession(w, r, pkt, session.RemovedClosed)
	case protocol.PacketCancelSession:
		h.removeSession(w, r, pkt, session.RemovedCancelled)
	default:
		// ParseRequest accepts request packet types only.
		h.reject(w, r, pkt, protocol.BadRequest("unexpected packet type %v", pkt.Type))
	}
	return nil
}

// Placeholders set on every BITS request.
const (
	placeholderSessionID   = "http.bits_upload.session_id"
	placeholderPacketType  = "http.bits_upload.packet_type"
	placeholderReceived    = "http.bits_upload.received"
	placeholderTotal       = "http.bits_upload.total"
	placeholderDestination = "http.bits_upload.destination"
)

// describe sets the placeholders that describe a session.
func describe(r *http.Request, st session.State) {
	repl := replacer(r)
	repl.Set(placeholderSessionID, st.ID.Wire())
	repl.Set(placeholderReceived, strconv.FormatInt(st.Received, 10))
	if st.Total >= 0 {
		repl.Set(placeholderTotal, strconv.FormatInt(st.Total, 10))
	}
	repl.Set(placeholderDestination, st.Destination())
}

// acquire looks up the session of a packet and takes its request lock,
// answering the request itself when that fails: unknown sessions get
// BG_E_SESSION_NOT_FOUND, and a session of another user 403. It returns
// nil when it answered.
func (h *Handler) acquire(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet) *session.Session {
	sess, err := h.store.Acquire(r.Context(), pkt.SessionID)
	switch {
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrClosed):
		h.reject(w, r, pkt, protocol.SessionNotFound("%s for an unknown session", pkt.Type))
		return nil
	case err != nil:
		// The client went away while the session was busy.
		if c := h.logger.Check(zapcore.DebugLevel, "request abandoned while waiting for its session"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()), zap.Error(err))
		}
		return nil
	}
	st := sess.State()
	describe(r, st)
	if perr := authorize(r, st); perr != nil {
		sess.Unlock()
		h.reject(w, r, pkt, perr)
		return nil
	}
	return sess
}

// authorize refuses a request for a session created by an authenticated
// user unless it comes from that same user. Sessions created without
// authentication are bound to nothing but their unguessable id.
func authorize(r *http.Request, st session.State) *protocol.Error {
	if st.User != "" && userOf(r) != st.User {
		return protocol.Errorf(http.StatusForbidden, protocol.EAccessDenied, "session belongs to another user")
	}
	return nil
}

// removeSession answers Close-Session and Cancel-Session: both delete every
// file of the session, and the Ack is written only once they are gone. A
// repeated request for a session that was already closed or cancelled
// gets 200 too, so a lost Ack never makes the client start over.
func (h *Handler) removeSession(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, reason session.RemoveReason) {
	if _, err := h.store.Get(pkt.SessionID); errors.Is(err, session.ErrClosed) {
		if c := h.logger.Check(zapcore.DebugLevel, "repeated "+pkt.Type.String()+" for a removed session"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()))
		}
		h.writeAck(w, r, pkt, protocol.Ack{SessionID: pkt.SessionID})
		return
	}
	sess := h.acquire(w, r, pkt)
	if sess == nil {
		return
	}
	defer sess.Unlock()
	st, err := h.store.RemoveAcquired(sess, reason)
	if err != nil {
		h.fail(w, r, pkt, err)
		return
	}
	h.logger.Info("session "+reason.String(),
		zap.String("session_id", pkt.SessionID.Wire()),
		zap.String("destination", st.Destination()),
		zap.Int64("received", st.Received),
		zap.Int64("total", st.Total),
		zap.Bool("committed", st.Committed))
	h.writeAck(w, r, pkt, protocol.Ack{SessionID: pkt.SessionID})
}

// writeAck writes an Ack and counts it.
func (h *Handler) writeAck(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, a protocol.Ack) {
	protocol.WriteAck(w, a)
	h.obs.count(func() {
		status := a.Status
		if status == 0 {
			status = http.StatusOK
		}
		metrics.packets.WithLabelValues(packetLabel(pkt), packetResult(status, uint32(a.Code))).Inc()
	})
}

// packetLabel names the packet type for metrics, from a closed set.
func packetLabel(pkt *protocol.Packet) string {
	if pkt == nil || pkt.Type.String() == "" {
		return "unknown"
	}
	return pkt.Type.String()
}

// reject answers a request the client got wrong, and logs why.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, perr *protocol.Error) {
	if c := h.logger.Check(zapcore.InfoLevel, "rejected BITS request"); c != nil {
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

// fail answers a request that failed on the server's side, and logs the
// error. A full disk gets ERROR_DISK_FULL, anything else E_FAIL; both are
// 500, which clients retry.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, err error) {
	code := protocol.EFail
	if session.IsDiskFull(err) {
		code = protocol.ErrorDiskFull
	}
	fields := []zap.Field{
		zap.Error(err),
		zap.String("error_code", code.String()),
		zap.String("packet_type", packetTypeOf(r, pkt)),
		zap.String("uri", r.RequestURI),
		zap.String("remote_ip", remoteIP(r)),
	}
	if pkt != nil && pkt.SessionID != "" {
		fields = append(fields, zap.String("session_id", pkt.SessionID.Wire()))
	}
	h.logger.Error("BITS request failed", fields...)
	h.writeAck(w, r, pkt, protocol.Ack{
		Status:  http.StatusInternalServerError,
		Code:    code,
		Context: protocol.ContextRemoteFile,
	})
}

// packetTypeOf names the packet type for logs, even for a request whose
// packet could not be parsed.
func packetTypeOf(r *http.Request, pkt *protocol.Packet) string {
	if pkt != nil {
		return pkt.Type.String()
	}
	v, _ := protocol.GetHeader(r.Header, protocol.HeaderPacketType)
	if len(v) > 40 {
		v = v[:40]
	}
	return v
}

// remoteIP returns the client address Caddy determined (honouring trusted
// proxies), or the connection's peer.
func remoteIP(r *http.Request) string {
	if addr, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && addr != "" {
		return addr
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// replacer returns the request's placeholder replacer.
func replacer(r *http.Request) *caddy.Replacer {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		return repl
	}
	return caddy.NewReplacer()
}
