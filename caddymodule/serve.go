package caddymodule

import (
	"context"
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
			if h.routed(w, r, id, nil) {
				return nil
			}
			return h.serveReply(w, r, id)
		}
		return next.ServeHTTP(w, r)
	}
	countBody(r)
	pkt, perr := protocol.ParseRequest(r)
	if perr != nil {
		h.answer(w, r, nil, perr)
		return nil
	}
	repl := replacer(r)
	repl.Set(placeholderPacketType, pkt.Type.String())
	if pkt.SessionID != "" {
		repl.Set(placeholderSessionID, pkt.SessionID.Wire())
		if pkt.Type != protocol.PacketCreateSession && h.routed(w, r, pkt.SessionID, pkt) {
			return nil
		}
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
		h.answer(w, r, pkt, protocol.BadRequest("unexpected packet type %v", pkt.Type))
	}
	return nil
}

// routed sends a request for a shared session this node does not hold to
// the node that does (or takes the session over), and reports whether the
// request was answered that way. Without shared sessions it does
// nothing.
func (h *Handler) routed(w http.ResponseWriter, r *http.Request, id protocol.SessionID, pkt *protocol.Packet) bool {
	n := h.store.shared
	if n == nil {
		return false
	}
	if n.moved(id) {
		// Found out while sending a part in the background.
		n.forget(id)
	}
	if _, err := h.store.Get(id); !errors.Is(err, session.ErrNotFound) {
		return false
	}
	return n.route(w, r, h, id, pkt) == routeAnswered
}

// forgetIfMoved drops a shared session that another node took over while
// this request used it; the client's retry is forwarded to that node. It
// runs after the request's lease is released.
func (h *Handler) forgetIfMoved(id protocol.SessionID, err *error) {
	if h.store.shared != nil && errors.Is(*err, session.ErrMoved) {
		h.store.shared.forget(id)
	}
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
	repl.Set(placeholderDestination, st.DestinationPath())
}

// lease looks up the session of a packet, checks that the request may
// use it, and takes its request lock, interrupting an older request of the
// session that is still reading a body. Its errors are the request's
// answer: ErrNotFound and ErrClosed for unknown sessions, a 403
// *protocol.Error for a session of another user, ErrStoreClosed while the
// store closes.
func (h *Handler) lease(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet) (*session.Lease, error) {
	sess, err := h.store.Get(pkt.SessionID)
	if errors.Is(err, session.ErrNotFound) {
		sess, err = h.revive(r, pkt.SessionID)
	}
	if err != nil {
		return nil, err
	}
	st := sess.State()
	describe(r, st)
	// Authorised before it may interrupt anything: another user's request
	// must not disturb the owner's.
	if err := authorize(r, st); err != nil {
		return nil, err
	}
	l, err := h.store.Acquire(r.Context(), pkt.SessionID, interruptRead(w))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The client went away while the session was busy.
		if c := h.logger.Check(zapcore.DebugLevel, "request abandoned while waiting for its session"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()), zap.Error(err))
		}
		w.Header().Set("Connection", "close")
	}
	return l, err
}

// revive makes again a session the store lost before it held any byte (a
// process crash, or reaped as empty), if this request's destination and
// user are the ones its id was made for (see session.Store.Revive).
func (h *Handler) revive(r *http.Request, id protocol.SessionID) (*session.Session, error) {
	root, rel, err := h.destination(r)
	if err != nil {
		return nil, session.ErrNotFound
	}
	sess, err := h.store.Revive(id, h.createInfo(r, root, rel))
	if errors.Is(err, session.ErrLimitReached) {
		err = h.tooManySessions()
	}
	if err != nil {
		return nil, err
	}
	if n := h.store.shared; n != nil {
		if err := n.created(r.Context(), r, id); err != nil {
			_ = h.store.Forget(id)
			return nil, err
		}
	}
	h.logger.Info("session revived", zap.String("session_id", id.Wire()), zap.String("destination", sess.State().DestinationPath()))
	return sess, nil
}

// authorize refuses a request for a session created by an authenticated
// user unless it comes from that same user. Sessions created without
// authentication are bound to nothing but their unguessable id.
func authorize(r *http.Request, st session.State) error {
	if st.User != "" && userOf(r) != st.User {
		return protocol.Errorf(http.StatusForbidden, protocol.EAccessDenied, "session belongs to another user")
	}
	return nil
}

// removeSession answers Close-Session and Cancel-Session: both delete every
// file of the session, and the Ack is written only once they are gone. A
// request for a session that was already closed or cancelled gets 200
// too, also when it raced another Close or Cancel, so a lost Ack never
// makes the client start over.
func (h *Handler) removeSession(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, reason session.RemoveReason) {
	l, err := h.lease(w, r, pkt)
	var st session.State
	if err == nil {
		st, err = l.Remove(reason)
		l.Release()
		h.forgetIfMoved(pkt.SessionID, &err)
	}
	switch {
	case errors.Is(err, session.ErrClosed):
		if c := h.logger.Check(zapcore.DebugLevel, "repeated "+pkt.Type.String()+" for a removed session"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()))
		}
	case err != nil:
		h.answer(w, r, pkt, err)
		return
	default:
		h.logger.Info("session "+reason.String(),
			zap.String("session_id", pkt.SessionID.Wire()),
			zap.String("destination", st.DestinationPath()),
			zap.Int64("received", st.Received),
			zap.Int64("total", st.Total),
			zap.Bool("committed", st.Committed))
	}
	h.writeAck(w, r, pkt, protocol.Ack{SessionID: pkt.SessionID})
}

// writeAck writes an Ack and counts it. What is left of the request body
// is drained first (see drain).
func (h *Handler) writeAck(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, a protocol.Ack) {
	h.drain(w, r)
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
