package caddymodule

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// fragment answers a Fragment following the decision table of the
// protocol: append the new tail, acknowledge a retransmission, ask the
// client to resync after a gap, and finish the upload when its last byte
// arrives.
func (h *Handler) fragment(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet) {
	sess, err := h.store.Acquire(r.Context(), pkt.SessionID)
	switch {
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrClosed):
		h.reject(w, r, pkt, protocol.SessionNotFound("fragment for an unknown session"))
		return
	case err != nil:
		// The client went away while the session was busy.
		h.logger.Debug("fragment abandoned while waiting for its session",
			zap.String("session_id", string(pkt.SessionID)), zap.Error(err))
		return
	}
	defer sess.Unlock()

	st := sess.State()
	if _, rel, perr := h.destination(r); perr != nil || rel != st.Path {
		h.reject(w, r, pkt, protocol.BadRequest("fragment sent to another URL than its session's (%s)", st.Path))
		return
	}
	if h.MaxSize > 0 && pkt.Range.Total > h.MaxSize {
		h.reject(w, r, pkt, protocol.Errorf(http.StatusInternalServerError, protocol.BGTooLarge,
			"upload of %d bytes exceeds max_size %d", pkt.Range.Total, h.MaxSize))
		return
	}

	res, err := sess.Write(pkt.Range, r.Body)
	switch {
	case errors.Is(err, session.ErrTotalChanged):
		h.reject(w, r, pkt, protocol.BadRequest("%v", err))
		return
	case errors.Is(err, session.ErrBodyIncomplete):
		// The connection broke mid-fragment; the bytes that arrived are
		// kept and nobody is left to read an Ack.
		if c := h.logger.Check(zapcore.DebugLevel, "fragment body ended early"); c != nil {
			c.Write(zap.String("session_id", string(pkt.SessionID)), zap.Int64("kept", res.Written), zap.Error(err))
		}
		protocol.WriteAck(w, protocol.ErrorAck(protocol.BadRequest("fragment body ended early")))
		return
	case errors.Is(err, session.ErrNotFound):
		h.reject(w, r, pkt, protocol.SessionNotFound("fragment for a removed session"))
		return
	case err != nil:
		h.fail(w, r, pkt, err)
		return
	}

	if res.Complete {
		h.finalAck(w, r, pkt, sess)
		return
	}
	ack := protocol.Ack{SessionID: pkt.SessionID, Received: res.Received, HasReceived: true}
	if res.Action == protocol.Gap {
		ack.Status = http.StatusRequestedRangeNotSatisfiable
		if c := h.logger.Check(zapcore.DebugLevel, "fragment after a gap; client must resync"); c != nil {
			c.Write(zap.String("session_id", string(pkt.SessionID)),
				zap.Int64("first", pkt.Range.First), zap.Int64("received", res.Received))
		}
	}
	protocol.WriteAck(w, ack)
}

// finalAck answers a fragment after which the session holds every byte:
// the first time it commits the upload (or, with a notification, delivers
// it), and every time it answers with the same final Ack.
func (h *Handler) finalAck(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, sess *session.Session) {
	info, finished := sess.Finished()
	if !finished {
		var perr *protocol.Error
		var err error
		info, perr, err = h.finish(r, sess)
		if perr != nil {
			h.reject(w, r, pkt, perr)
			return
		}
		if err != nil {
			h.fail(w, r, pkt, err)
			return
		}
	}
	st := sess.State()
	protocol.WriteAck(w, protocol.Ack{
		SessionID:   pkt.SessionID,
		Received:    st.Total,
		HasReceived: true,
		ReplyURL:    info.ReplyURL,
	})
}

// finish settles a complete session: it commits the upload to its
// destination and records the final Ack durably.
//
// The commit happens here, with the last byte, and not at Close-Session as
// [MC-BUP] 3.2.5.2.7 has it: MSDN (IBackgroundCopyJob::Complete,
// Cancel-Session) says the file is in place once the last fragment is
// acknowledged, clients may never send Close-Session, and a Close-Session
// that only cleans up can be repeated safely.
func (h *Handler) finish(r *http.Request, sess *session.Session) (session.FinalInfo, *protocol.Error, error) {
	if err := sess.Commit(h.AllowOverwrite); err != nil {
		if perr := destinationAck(err); perr != nil {
			return session.FinalInfo{}, perr, nil
		}
		return session.FinalInfo{}, nil, err
	}
	info := session.FinalInfo{}
	if err := sess.Finish(info); err != nil {
		return info, nil, err
	}
	st := sess.State()
	h.logger.Info("upload committed",
		zap.String("session_id", string(st.ID)),
		zap.String("destination", st.Destination()),
		zap.Int64("size", st.Total),
		zap.String("sha256", hexDigest(st.Digest)))
	return info, nil, nil
}
