package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// replyParam is the query parameter that marks a reply download; its
// value is the session id (a bare GUID).
const replyParam = "bits_reply"

// replyID returns the session id of a reply download, and false for any
// request that is not one.
func replyID(r *http.Request) (protocol.SessionID, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return "", false
	}
	if r.URL.RawQuery == "" {
		return "", false
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", false
	}
	v := q.Get(replyParam)
	if v == "" {
		return "", false
	}
	id, err := protocol.ParseSessionID("{" + v + "}")
	if err != nil {
		return "", false
	}
	return id, true
}

// serveReply serves the reply of an upload-reply session as the BITS
// client downloads it: GET and HEAD with single or multiple byte ranges,
// Content-Length, Accept-Ranges, a stable Last-Modified and ETag (so
// If-Range and If-Unmodified-Since work) and no compression. Only a
// finished session's stored reply is served, and only at its own upload
// URL; everything else is 404.
func (h *Handler) serveReply(w http.ResponseWriter, r *http.Request, id protocol.SessionID) error {
	sess, err := h.store.Get(id)
	if err != nil {
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("reply of session %s: %w", id, err))
	}
	st := sess.State()
	info, finished := sess.Finished()
	if !finished || info.ReplyStatic || info.ReplyURL == "" {
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("session %s has no reply to serve", id))
	}
	if root, rel, err := h.destination(r); err != nil || root != st.Root || rel != st.Path {
		return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("reply of session %s requested at another URL", id))
	}
	if err := authorize(r, st); err != nil {
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("reply of session %s: %w", id, err))
	}
	f, err := sess.OpenReply()
	if err != nil {
		if errors.Is(err, session.ErrNotFound) {
			return caddyhttp.Error(http.StatusNotFound, err)
		}
		h.logger.Error("opening reply", zap.String("session_id", id.Wire()), zap.Error(err))
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	defer f.Close()
	sess.Touch()
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("X-Content-Type-Options", "nosniff")
	// no-transform keeps the encode handler from compressing the reply:
	// BITS downloads need byte ranges of the stored bytes.
	hdr.Set("Cache-Control", "private, no-transform")
	hdr.Set("Etag", fmt.Sprintf(`"%s-%d-%d"`, id.Bare(), info.ReplySize, info.ReplyModified.Unix()))
	http.ServeContent(w, r, "", info.ReplyModified, f)
	return nil
}
