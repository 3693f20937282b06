package caddymodule

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// maxReplyURLLength is the longest BITS-Reply-URL clients accept.
const maxReplyURLLength = 2200

// digestHeader is the reference-mode twin of Content-Digest: the SHA-256
// of the file named by BITS-Request-DataFile-Name.
const digestHeader = "BITS-Request-DataFile-Digest"

// deliver notifies the server application of a complete upload and stores
// its reply. It returns what the final Ack is to carry, or the Ack to
// send when the application failed (context 0x7), and the result label of
// the notifications_total metric.
//
// The exchange runs under the request's context, detached from its
// cancellation and bounded by the notify timeout: neither a config reload
// nor the client hanging up cuts a delivery short, so its outcome is
// recorded and the client's retry gets it without a second delivery.
func (h *Handler) deliver(r *http.Request, sess *session.Session) (info session.FinalInfo, result string, perr *protocol.Error, err error) {
	n := h.Notify
	st := sess.State()
	target, err := notifyURL(replacer(r).ReplaceAll(n.URL, ""), st.URL)
	if err != nil {
		return session.FinalInfo{}, notifyLocalError, nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Duration(n.Timeout))
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, http.NoBody) //nolint:gosec // the URL is the configured notify URL
	if err != nil {
		return session.FinalInfo{}, notifyLocalError, nil, fmt.Errorf("building notification: %w", err)
	}
	sum, err := sess.EnsureDigest()
	if err != nil {
		return session.FinalInfo{}, notifyLocalError, nil, err
	}
	digest := "sha-256=:" + base64.StdEncoding.EncodeToString(sum) + ":"
	if n.byReference {
		// A reply left by an earlier, failed attempt must not become this
		// one's.
		if err := sess.DiscardReply(); err != nil {
			return session.FinalInfo{}, notifyLocalError, nil, err
		}
		req.Header.Set(protocol.HeaderRequestDataFileName, sess.DataPath())
		req.Header.Set(protocol.HeaderResponseDataFileName, sess.ReplyPath())
		req.Header.Set(digestHeader, digest)
		req.ContentLength = 0
	} else {
		f, err := os.Open(sess.DataPath()) //nolint:gosec // a path the session store built from a server-generated id
		if err != nil {
			return session.FinalInfo{}, notifyLocalError, nil, fmt.Errorf("opening upload for notification: %w", err)
		}
		defer f.Close()
		req.Header.Set("Content-Digest", digest)
		req.Header.Set("Content-Type", "application/octet-stream")
		if st.Total > 0 {
			req.Body = io.NopCloser(io.NewSectionReader(f, 0, st.Total))
			req.GetBody = func() (io.ReadCloser, error) {
				return io.NopCloser(io.NewSectionReader(f, 0, st.Total)), nil
			}
		}
		req.ContentLength = st.Total
	}
	req.Header.Set(protocol.HeaderOriginalRequestURL, st.URL)
	req.Header.Set(protocol.HeaderSessionID, st.ID.Wire())
	req.Header.Set("User-Agent", "caddy-bits")
	for name, values := range n.Headers {
		req.Header.Del(name)
		for _, v := range values {
			req.Header.Add(name, replacer(r).ReplaceAll(v, ""))
		}
	}

	resp, err := n.client.Do(req) //nolint:gosec // the URL is the configured notify URL
	if err != nil {
		return session.FinalInfo{}, failureResult(ctx, err), transportFailure(ctx, "sending notification to "+target, err), nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		return session.FinalInfo{}, notifyAppError, applicationFailure(resp.StatusCode, target), nil
	}

	info = session.FinalInfo{Commit: resp.Header.Get(protocol.HeaderCopyFileToDest) != "" || len(resp.Header.Values(protocol.HeaderCopyFileToDest)) > 0}
	if static := resp.Header.Get(protocol.HeaderStaticResponseURL); static != "" {
		u, err := resolveAgainst(st.URL, static)
		if err != nil || len(u) > maxReplyURLLength {
			return session.FinalInfo{}, notifyAppError, protocol.Errorf(http.StatusBadGateway, protocol.HTTPError(http.StatusBadGateway),
				"server application answered an unusable %s %.100q", protocol.HeaderStaticResponseURL, static).App(), nil
		}
		_, _ = io.CopyN(io.Discard, resp.Body, n.MaxReplySize)
		if err := sess.DiscardReply(); err != nil {
			return session.FinalInfo{}, notifyLocalError, nil, err
		}
		info.ReplyURL, info.ReplyStatic = u, true
		return info, notifySuccess, nil, nil
	}

	var size int64
	if n.byReference {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		size, err = sess.AdoptReply(n.MaxReplySize)
	} else {
		body := &readErrRecorder{r: resp.Body}
		size, err = sess.StoreReply(body, n.MaxReplySize)
		if body.err != nil && !errors.Is(err, session.ErrReplyTooLarge) {
			return session.FinalInfo{}, failureResult(ctx, body.err), transportFailure(ctx, "reading the reply of "+target, body.err), nil
		}
	}
	switch {
	case errors.Is(err, session.ErrReplyTooLarge):
		return session.FinalInfo{}, notifyTooLarge, protocol.Errorf(http.StatusInternalServerError, protocol.BGTooLarge,
			"server application's reply exceeds max_reply_size %d", n.MaxReplySize).App(), nil
	case err != nil:
		return session.FinalInfo{}, notifyLocalError, nil, err
	}
	info.ReplyURL = replyURL(r, st.ID)
	info.ReplySize = size
	info.ReplyModified = time.Now().UTC().Truncate(time.Second)
	return info, notifySuccess, nil, nil
}

// notifyURL resolves the notification URL against the upload URL and
// appends the upload URL's query string to it.
func notifyURL(notify, upload string) (string, error) {
	base, u, err := resolve(upload, notify)
	if err != nil {
		return "", err
	}
	if base.RawQuery != "" {
		if u.RawQuery != "" {
			u.RawQuery += "&" + base.RawQuery
		} else {
			u.RawQuery = base.RawQuery
		}
	}
	return u.String(), nil
}

// resolve parses base and ref and resolves ref against base.
func resolve(base, ref string) (b, u *url.URL, err error) {
	if b, err = url.Parse(base); err != nil {
		return nil, nil, fmt.Errorf("parsing URL %q: %w", base, err)
	}
	r, err := url.Parse(ref)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing URL %q: %w", ref, err)
	}
	return b, b.ResolveReference(r), nil
}

// resolveAgainst resolves a possibly relative URL against base and
// requires an http or https result.
func resolveAgainst(base, ref string) (string, error) {
	_, u, err := resolve(base, ref)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("not an http URL")
	}
	return u.String(), nil
}

// failureResult names a failed exchange for notifications_total.
func failureResult(ctx context.Context, err error) string {
	if transportFailure(ctx, "", err).Status == http.StatusRequestTimeout {
		return notifyTimeout
	}
	return notifyUnreachable
}

// transportFailure maps a failed exchange with the application: a timeout
// is 408 with ERROR_TIMEOUT, which clients retry; anything else is 502 with
// BG_E_HTTP_ERROR_502, also retried. [MC-BUP] 3.3.6 prints the timeout
// code as "x80070112", evidently ERROR_DISK_FULL's garbled value; the real
// ERROR_TIMEOUT says what happened.
func transportFailure(ctx context.Context, what string, err error) *protocol.Error {
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return protocol.Errorf(http.StatusRequestTimeout, protocol.ErrorTimeout, "%s: timed out: %v", what, err).App()
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return protocol.Errorf(http.StatusRequestTimeout, protocol.ErrorTimeout, "%s: timed out: %v", what, err).App()
	}
	return protocol.Errorf(http.StatusBadGateway, protocol.HTTPError(http.StatusBadGateway), "%s: %v", what, err).App()
}

// applicationFailure relays the application's non-200 status to the client
// with BG_E_HTTP_ERROR_<status>, so the client classifies it as Windows
// does (a 403 stops it for good, a 5xx is retried). A status the client
// would read as success (1xx, 2xx) becomes 502.
func applicationFailure(status int, target string) *protocol.Error {
	relayed := status
	if status < 300 || status > 599 {
		relayed = http.StatusBadGateway
	}
	return protocol.Errorf(relayed, protocol.HTTPError(status), "server application %s answered %d %s",
		target, status, strings.ToLower(http.StatusText(status))).App()
}

// replyURL returns the absolute URL the client downloads a session's
// reply from: the URL of the request (as the client sent it, so it goes
// through the same site and matcher) with a bits_reply query parameter.
func replyURL(r *http.Request, id protocol.SessionID) string {
	u := requestURL(r)
	q := u.RawQuery
	if q != "" {
		q += "&"
	}
	u.RawQuery = q + replyParam + "=" + id.Bare()
	return u.String()
}

// readErrRecorder remembers the error of the reader it wraps (other than
// io.EOF), to tell the application's failures from local ones.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (e *readErrRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
