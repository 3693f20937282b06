package caddymodule

import (
	"errors"
	"net/http"

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
	switch pkt.Type {
	case protocol.PacketPing:
		protocol.WriteAck(w, protocol.Ack{})
	case protocol.PacketCreateSession:
		h.createSession(w, r, pkt)
	case protocol.PacketFragment:
		h.fragment(w, r, pkt)
	case protocol.PacketCloseSession:
		h.removeSession(w, r, pkt, session.RemovedClosed)
	case protocol.PacketCancelSession:
		h.removeSession(w, r, pkt, session.RemovedCancelled)
	}
	return nil
}

// removeSession answers Close-Session and Cancel-Session: both delete every
// file of the session, and the Ack is written only once they are gone. A
// repeated request for a session that was already closed or cancelled
// gets 200 too, so a lost Ack never makes the client start over.
func (h *Handler) removeSession(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, reason session.RemoveReason) {
	st, err := h.store.Remove(r.Context(), pkt.SessionID, reason)
	switch {
	case err == nil:
		h.logger.Info("session "+reason.String(),
			zap.String("session_id", string(pkt.SessionID)),
			zap.String("destination", st.Destination()),
			zap.Int64("received", st.Received),
			zap.Int64("total", st.Total),
			zap.Bool("committed", st.Committed))
	case errors.Is(err, session.ErrClosed):
		if c := h.logger.Check(zapcore.DebugLevel, "repeated "+pkt.Type.String()+" for a removed session"); c != nil {
			c.Write(zap.String("session_id", string(pkt.SessionID)))
		}
	case errors.Is(err, session.ErrNotFound):
		h.reject(w, r, pkt, protocol.SessionNotFound("%s for an unknown session", pkt.Type))
		return
	default:
		h.fail(w, r, pkt, err)
		return
	}
	protocol.WriteAck(w, protocol.Ack{SessionID: pkt.SessionID})
}

// reject answers a request the client got wrong, and logs why.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, perr *protocol.Error) {
	if c := h.logger.Check(zapcore.InfoLevel, "rejected BITS request"); c != nil {
		fields := []zap.Field{
			zap.String("reason", perr.Msg),
			zap.Int("status", perr.Status),
			zap.String("error_code", perr.Code.String()),
			zap.String("error_name", perr.Code.Name()),
			zap.String("packet_type", packetTypeOf(r, pkt)),
			zap.String("uri", r.RequestURI),
			zap.String("remote_ip", remoteIP(r)),
		}
		if pkt != nil && pkt.SessionID != "" {
			fields = append(fields, zap.String("session_id", string(pkt.SessionID)))
		}
		c.Write(fields...)
	}
	protocol.WriteAck(w, protocol.ErrorAck(perr))
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
		fields = append(fields, zap.String("session_id", string(pkt.SessionID)))
	}
	h.logger.Error("BITS request failed", fields...)
	protocol.WriteAck(w, protocol.Ack{
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
	return r.RemoteAddr
}

// replacer returns the request's placeholder replacer.
func replacer(r *http.Request) *caddy.Replacer {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		return repl
	}
	return caddy.NewReplacer()
}
