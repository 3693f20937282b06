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
// client to resync after a gap, and finish the upload when its last byte
// arrives.
func (h *Handler) fragment(w http.ResponseWriter, r *http.Request, pkt *protocol.Packet) {
	sess := h.acquire(w, r, pkt)
	if sess == nil {
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
	if need := pkt.Range.Last + 1 - st.Received; need > 0 && pkt.Range.First <= st.Received {
		if perr := h.checkSpace(st.Root, need); perr != nil {
			h.reject(w, r, pkt, perr)
			return
		}
	}

	res, err := sess.Write(pkt.Range, r.Body)
	h.obs.count(func() { metrics.bytesReceived.Add(float64(res.Written)) })
	replacer(r).Set(placeholderReceived, strconv.FormatInt(res.Received, 10))
	replacer(r).Set(placeholderTotal, strconv.FormatInt(pkt.Range.Total, 10))
	switch {
	case errors.Is(err, session.ErrTotalChanged):
		h.reject(w, r, pkt, protocol.BadRequest("%v", err))
		return
	case errors.Is(err, session.ErrBodyIncomplete):
		// The connection broke mid-fragment; the bytes that arrived are
		// kept and nobody is left to read an Ack.
		if c := h.logger.Check(zapcore.DebugLevel, "fragment body ended early"); c != nil {
			c.Write(zap.String("session_id", pkt.SessionID.Wire()), zap.Int64("kept", res.Written), zap.Error(err))
		}
		h.writeAck(w, r, pkt, protocol.ErrorAck(protocol.BadRequest("fragment body ended early")))
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
			c.Write(zap.String("session_id", pkt.SessionID.Wire()),
				zap.Int64("first", pkt.Range.First), zap.Int64("received", res.Received))
		}
	}
	h.writeAck(w, r, pkt, ack)
}

// finalAck answers a fragment after which the session holds every byte:
// the first time it finishes the session, and every time it answers with
// the same final Ack.
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
	h.writeAck(w, r, pkt, protocol.Ack{
		SessionID:   pkt.SessionID,
		Received:    st.Total,
		HasReceived: true,
		ReplyURL:    info.ReplyURL,
	})
}

// finish settles a complete session, once: it notifies the server
// application if one is configured, commits the upload to its destination
// (always without a notification, on request with one), and records the
// final Ack durably. Each step's outcome is recorded before the next, so a
// retried final fragment, or one after a restart, redoes only what did not
// succeed: a commit refused because the destination exists never causes a
// second notification.
//
// The commit happens here, with the last byte, and not at Close-Session as
// [MC-BUP] 3.2.5.2.7 has it: MSDN (IBackgroundCopyJob::Complete,
// Cancel-Session) says the file is in place once the last fragment is
// acknowledged, clients may never send Close-Session, and a Close-Session
// that only cleans up can be repeated safely.
func (h *Handler) finish(r *http.Request, sess *session.Session) (session.FinalInfo, *protocol.Error, error) {
	info, decided := sess.Final()
	if !decided {
		if h.Notify == nil {
			info = session.FinalInfo{Commit: true}
		} else {
			var perr *protocol.Error
			var err error
			info, perr, err = h.notify(r, sess)
			if perr != nil || err != nil {
				return info, perr, err
			}
		}
	}
	if info.Commit {
		start := time.Now()
		if err := sess.Commit(h.AllowOverwrite); err != nil {
			if perr := destinationAck(err); perr != nil {
				return info, perr, nil
			}
			return info, nil, err
		}
		h.obs.count(func() { metrics.commitDuration.Observe(time.Since(start).Seconds()) })
		st := sess.State()
		fields := []zap.Field{
			zap.String("session_id", st.ID.Wire()),
			zap.String("destination", st.Destination()),
			zap.Int64("size", st.Total),
			zap.Duration("duration", time.Since(start)),
		}
		if len(st.Digest) > 0 {
			fields = append(fields, zap.String("sha256", hexDigest(st.Digest)))
		}
		h.logger.Info("upload committed", fields...)
	}
	if err := sess.Finish(info); err != nil {
		return info, nil, err
	}
	st := sess.State()
	h.obs.count(metrics.sessionsCompleted.Inc)
	h.obs.emit(eventSessionCompleted, func() map[string]any {
		data := map[string]any{
			"session_id":  st.ID.Wire(),
			"destination": st.Destination(),
			"size":        st.Total,
			"committed":   st.Committed,
			"reply_url":   info.ReplyURL,
			"user":        st.User,
			"duration_ms": time.Since(st.Created).Milliseconds(),
		}
		// The digest is computed for notified uploads only.
		if len(st.Digest) > 0 {
			data["sha256"] = hexDigest(st.Digest)
		}
		return data
	})
	if h.Notify != nil {
		// The application has the upload (and it is committed if it
		// asked), so its data file can go now; the reply stays until the
		// session ends.
		if err := sess.DiscardData(); err != nil {
			h.logger.Warn("deleting delivered upload", zap.String("session_id", st.ID.Wire()), zap.Error(err))
		}
	}
	return info, nil, nil
}

// notify delivers a complete upload to the server application, records
// the outcome durably, and counts and reports it.
func (h *Handler) notify(r *http.Request, sess *session.Session) (session.FinalInfo, *protocol.Error, error) {
	start := time.Now()
	info, result, perr, err := h.deliver(r, sess)
	elapsed := time.Since(start)
	h.obs.count(func() {
		metrics.notifications.WithLabelValues(result).Inc()
		metrics.notificationDuration.Observe(elapsed.Seconds())
	})
	st := sess.State()
	if perr != nil || err != nil {
		h.logger.Warn("notification failed",
			zap.String("session_id", st.ID.Wire()),
			zap.String("result", result),
			zap.Duration("duration", elapsed),
			zap.String("reason", errorText(perr, err)))
		h.obs.emit(eventNotificationFailed, func() map[string]any {
			data := map[string]any{
				"session_id":  st.ID.Wire(),
				"destination": st.Destination(),
				"size":        st.Total,
				"result":      result,
				"reason":      errorText(perr, err),
			}
			if perr != nil {
				data["status"] = perr.Status
				data["error_code"] = perr.Code.String()
			}
			return data
		})
		return info, perr, err
	}
	if err := sess.SetFinal(info); err != nil {
		return info, nil, err
	}
	h.logger.Info("upload delivered to the server application",
		zap.String("session_id", st.ID.Wire()),
		zap.Duration("duration", elapsed),
		zap.Bool("copy_to_destination", info.Commit),
		zap.String("reply_url", info.ReplyURL),
		zap.Int64("reply_size", info.ReplySize))
	return info, nil, nil
}
