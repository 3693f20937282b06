package caddymodule

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// fragment answers a Fragment following the decision table of the
// protocol: append the new tail, acknowledge a retransmission, ask the
// client to resync after a gap, and settle the upload when its last byte
// arrives.
func (h *Handler) fragment(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet) {
	l, err := h.lease(w, r, pkt)
	if err != nil {
		h.answer(w, r, pkt, err)
		return
	}
	// Deferred before Release, so it runs after it.
	var failure error
	defer h.forgetIfMoved(pkt.SessionID, &failure)
	defer l.Release()

	st := l.State()
	// The request must name the session's own destination, exactly as a
	// Create-Session would have mapped it now.
	if root, rel, err := h.destination(r); err != nil || root != st.Root || rel != st.Path {
		h.answer(w, r, pkt, protocol.BadRequest("fragment sent to another URL than its session's (%s)", st.Path))
		return
	}
	if h.MaxSize > 0 && pkt.Range.Total > h.MaxSize {
		h.answer(w, r, pkt, protocol.Errorf(http.StatusInternalServerError, protocol.BGTooLarge,
			"upload of %d bytes exceeds max_size %d", pkt.Range.Total, h.MaxSize))
		return
	}
	if need := pkt.Range.Last + 1 - st.Received; need > 0 && pkt.Range.First <= st.Received {
		if err := h.checkSpace(st.Root, need); err != nil {
			h.answer(w, r, pkt, err)
			return
		}
	}

	res, err := l.Write(pkt.Range, r.Body, session.WriteOptions{Place: h.Notify == nil, Overwrite: h.AllowOverwrite})
	if l.Interrupted() {
		// The interrupt set a read deadline in the past, perhaps just
		// after the body was read: the connection cannot carry another
		// request.
		w.Header().Set("Connection", "close")
	}
	h.obs.count(func() { metrics.bytesReceived.Add(float64(res.Written)) })
	replacer(r).Set(placeholderReceived, strconv.FormatInt(res.Received, 10))
	replacer(r).Set(placeholderTotal, strconv.FormatInt(pkt.Range.Total, 10))
	switch {
	case errors.Is(err, session.ErrInterrupted):
		// A newer request of the session took over; this one's
		// connection stalled or was given up, so it is closed.
		if c := h.logger.Check(zapcore.DebugLevel, "fragment taken over by a newer request"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()), zap.Int64("kept", res.Written))
		}
		// 503, which clients retry: an answer this request's client
		// still reads must not fail its job.
		h.writeAck(w, r, pkt, protocol.Ack{Status: http.StatusServiceUnavailable,
			Code: protocol.HTTPError(http.StatusServiceUnavailable), Context: protocol.ContextRemoteFile})
		return
	case errors.Is(err, session.ErrBodyIncomplete):
		// The connection broke mid-fragment; the bytes that arrived are
		// kept and nobody is left to read an Ack.
		if c := h.logger.Check(zapcore.DebugLevel, "fragment body ended early"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()), zap.Int64("kept", res.Written), zap.Error(err))
		}
		h.writeAck(w, r, pkt, protocol.ErrorAck(protocol.BadRequest("fragment body ended early")))
		return
	case err != nil:
		failure = err
		h.answer(w, r, pkt, err)
		return
	}

	if res.Complete {
		failure = h.finalAck(w, r, pkt, l)
		return
	}
	ack := protocol.Ack{SessionID: pkt.SessionID, Received: res.Received, HasReceived: true}
	if res.Action == protocol.Gap {
		ack.Status = http.StatusRequestedRangeNotSatisfiable
		if c := h.logger.Check(zapcore.DebugLevel, "fragment after a gap; client must resync"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()),
				zap.Int64("first", pkt.Range.First), zap.Int64("received", res.Received))
		}
	}
	h.writeAck(w, r, pkt, ack)
}

// finalAck answers a fragment after which the session holds every byte:
// the first time it settles the session, and every time it answers with
// the same final Ack.
//
// The upload is placed here, with the last byte, and not at Close-Session
// as [MC-BUP] 3.2.5.2.7 has it: MSDN (IBackgroundCopyJob::Complete,
// Cancel-Session) says the file is in place once the last fragment is
// acknowledged, clients may never send Close-Session, and a Close-Session
// that only cleans up can be repeated safely.
func (h *Handler) finalAck(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet, l *session.Lease) error {
	opts := session.SettleOptions{Overwrite: h.AllowOverwrite}
	if h.Notify != nil {
		opts.Notify = h.notifier(r)
	}
	n := h.store.shared
	if n != nil {
		opts.Decided = func(st session.State) error {
			return n.decided(r.Context(), st, l.Session().ReplyPath())
		}
	}
	out, err := l.Settle(r.Context(), opts)
	if err != nil {
		h.answer(w, r, pkt, err)
		return err
	}
	st := l.State()
	if !out.Cached {
		h.settled(st, out)
		if n != nil {
			// The cached final Ack, for a retry any node may take.
			if err := n.publish(r.Context(), st.ID, ""); err != nil {
				h.logger.Warn("publishing a settled session", zap.String("session_id", st.ID.Wire()), zap.Error(err))
			}
		}
	}
	h.writeAck(w, r, pkt, protocol.Ack{
		SessionID:   pkt.SessionID,
		Received:    st.Total,
		HasReceived: true,
		ReplyURL:    out.Final.ReplyURL,
	})
	return nil
}

// settled logs, counts and reports a session that was just settled.
func (h *Handler) settled(st session.State, out session.Settlement) {
	if out.Placed {
		h.obs.count(func() { metrics.commitDuration.Observe(out.PlaceTime.Seconds()) })
		fields := []zap.Field{
			zap.String("session_id", st.ID.Wire()),
			zap.String("destination", st.DestinationPath()),
			zap.Int64("size", st.Total),
			zap.Duration("duration", out.PlaceTime),
		}
		if len(st.Digest) > 0 {
			fields = append(fields, zap.String("sha256", hexDigest(st.Digest)))
		}
		h.logger.Info("upload committed", fields...)
	}
	if out.DiscardError != nil {
		h.logger.Warn("deleting delivered upload", zap.String("session_id", st.ID.Wire()), zap.Error(out.DiscardError))
	}
	h.obs.count(metrics.sessionsCompleted.Inc)
	h.obs.emit(eventSessionCompleted, func() map[string]any {
		data := map[string]any{
			"session_id":  st.ID.Wire(),
			"destination": st.DestinationPath(),
			"size":        st.Total,
			"committed":   st.Committed,
			"reply_url":   out.Final.ReplyURL,
			"user":        st.User,
			"duration_ms": time.Since(st.Created).Milliseconds(),
		}
		// The digest is computed for notified uploads only.
		if len(st.Digest) > 0 {
			data["sha256"] = hexDigest(st.Digest)
		}
		return data
	})
}
