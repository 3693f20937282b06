package caddymodule

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// maxReplyURLLength is the longest BITS-Reply-URL clients accept.
const maxReplyURLLength = 2200

// digestHeader is the reference-mode twin of Content-Digest: the SHA-256
// of the file named by BITS-Request-DataFile-Name.
const digestHeader = "BITS-Request-DataFile-Digest"

// deliveryError is a failed notification, with the result label of the
// notifications_total metric. It wraps the *protocol.Error to answer the
// client with (context 0x7) when the application failed, or the local
// error when this server did.
type deliveryError struct {
	result string
	err    error
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

// failed wraps err as a notification that failed with the given result.
func failed(result string, err error) error { return &deliveryError{result: result, err: err} }

// notifier returns the Notify function of Settle for a final fragment: it
// delivers the upload, then counts, logs and reports the outcome.
func (h *Handler) notifier(r *http.Request) func(context.Context, *session.Delivery) (session.FinalInfo, error) {
	return func(ctx context.Context, d *session.Delivery) (session.FinalInfo, error) {
		start := time.Now()
		info, err := h.deliver(ctx, r, d)
		elapsed := time.Since(start)
		result := notifySuccess
		if de, ok := errors.AsType[*deliveryError](err); ok {
			result = de.result
		} else if err != nil {
			result = notifyLocalError
		}
		h.obs.count(func() {
			metrics.notifications.WithLabelValues(result).Inc()
			metrics.notificationDuration.Observe(elapsed.Seconds())
		})
		st := d.State()
		if err != nil {
			h.logger.Warn("notification failed",
				zap.String("session_id", st.ID.Wire()),
				zap.String("result", result),
				zap.Duration("duration", elapsed),
				zap.String("reason", err.Error()))
			h.obs.emit(eventNotificationFailed, func() map[string]any {
				data := map[string]any{
					"session_id":  st.ID.Wire(),
					"destination": st.DestinationPath(),
					"size":        st.Total,
					"result":      result,
					"reason":      err.Error(),
				}
				if perr, ok := errors.AsType[*protocol.Error](err); ok {
					data["status"] = perr.Status
					data["error_code"] = perr.Code.String()
				}
				return data
			})
			return info, err
		}
		h.logger.Info("upload delivered to the server application",
			zap.String("session_id", st.ID.Wire()),
			zap.Duration("duration", elapsed),
			zap.Bool("copy_to_destination", info.Commit),
			zap.String("reply_url", info.ReplyURL),
			zap.Int64("reply_size", info.ReplySize))
		return info, nil
	}
}

// deliver notifies the server application of a complete upload and stores
// its reply: it builds the request, exchanges it, and interprets the
// answer. It returns what the final Ack is to carry.
//
// The exchange runs under the request's context, detached from its
// cancellation and bounded by the notify timeout: neither a config reload
// nor the client hanging up cuts a delivery short, so its outcome is
// recorded and the client's retry gets it without a second delivery.
func (h *Handler) deliver(ctx context.Context, r *http.Request, d *session.Delivery) (session.FinalInfo, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Notify.Timeout))
	defer cancel()
	req, client, err := h.buildNotification(ctx, r, d)
	if err != nil {
		return session.FinalInfo{}, err
	}
	if req.Body != nil {
		defer req.Body.Close()
	}
	resp, err := exchange(ctx, client, req)
	if err != nil {
		return session.FinalInfo{}, err
	}
	defer resp.Body.Close()
	replyFile := req.Header.Get(protocol.HeaderResponseDataFileName) != ""
	return h.interpret(ctx, r, d, req.URL.String(), resp, replyFile)
}

// buildNotification builds the POST to the application, and picks the
// client that sends it (see notifyTarget).
func (h *Handler) buildNotification(ctx context.Context, r *http.Request, d *session.Delivery) (*http.Request, *http.Client, error) {
	n := h.Notify
	st := d.State()
	target, self, err := n.target(r, st)
	if err != nil {
		return nil, nil, err
	}
	client := n.client
	if self {
		client = n.self
		ctx = context.WithValue(ctx, selfAddrKey{}, r.Context().Value(http.LocalAddrContextKey))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), http.NoBody) //nolint:gosec // the configured notify URL
	if err != nil {
		return nil, nil, fmt.Errorf("building notification: %w", err)
	}
	sum, err := d.Digest()
	if err != nil {
		return nil, nil, err
	}
	digest := "sha-256=:" + base64.StdEncoding.EncodeToString(sum) + ":"
	if n.byReference {
		// A reply left by an earlier, failed attempt must not become this
		// one's.
		if err := d.DiscardReply(); err != nil {
			return nil, nil, err
		}
		if path, ok := d.Path(); ok {
			req.Header.Set(protocol.HeaderRequestDataFileName, path)
			req.Header.Set(protocol.HeaderResponseDataFileName, d.ReplyPath())
		} else if err := h.nameObject(ctx, req, d); err != nil {
			return nil, nil, err
		}
		req.Header.Set(digestHeader, digest)
		req.ContentLength = 0
	} else {
		req.Header.Set("Content-Digest", digest)
		req.Header.Set("Content-Type", "application/octet-stream")
		if st.Total > 0 {
			body, err := d.Open()
			if err != nil {
				return nil, nil, fmt.Errorf("opening upload for notification: %w", err)
			}
			req.Body = body
			req.GetBody = func() (io.ReadCloser, error) { return d.Open() }
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
	return req, client, nil
}

// exchange sends the notification and returns the application's answer,
// or the failure to get one, classified for the client.
func exchange(ctx context.Context, client *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := client.Do(req) //nolint:gosec // the configured notify URL
	if err != nil {
		perr := transportFailure(ctx, "sending notification to "+req.URL.Redacted(), err)
		return nil, failed(failureResult(perr), perr)
	}
	return resp, nil
}

// interpret reads the application's answer: its status, whether it asks
// for the upload to be placed, and its reply (a static URL, the file it
// was asked to write when replyFile is set, or else its body), which it
// stores.
func (h *Handler) interpret(ctx context.Context, r *http.Request, d *session.Delivery, target string, resp *http.Response, replyFile bool) (session.FinalInfo, error) {
	n := h.Notify
	st := d.State()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		return session.FinalInfo{}, failed(notifyAppError, applicationFailure(resp.StatusCode, target))
	}
	info := session.FinalInfo{Commit: len(resp.Header.Values(protocol.HeaderCopyFileToDest)) > 0}
	if static := resp.Header.Get(protocol.HeaderStaticResponseURL); static != "" {
		u, err := resolveAgainst(st.URL, static)
		if err != nil || len(u) > maxReplyURLLength {
			return session.FinalInfo{}, failed(notifyAppError, protocol.Errorf(http.StatusBadGateway, protocol.HTTPError(http.StatusBadGateway),
				"server application answered an unusable %s %.100q", protocol.HeaderStaticResponseURL, static).App())
		}
		_, _ = io.CopyN(io.Discard, resp.Body, n.MaxReplySize)
		if err := d.DiscardReply(); err != nil {
			return session.FinalInfo{}, err
		}
		info.ReplyURL, info.ReplyStatic = u, true
		return info, nil
	}
	var size int64
	var err error
	if replyFile {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		size, err = d.AdoptReply(n.MaxReplySize)
	} else {
		body := &readErrRecorder{r: resp.Body}
		size, err = d.StoreReply(body, n.MaxReplySize)
		if body.err != nil && !errors.Is(err, session.ErrReplyTooLarge) {
			perr := transportFailure(ctx, "reading the reply of "+target, body.err)
			return session.FinalInfo{}, failed(failureResult(perr), perr)
		}
	}
	switch {
	case errors.Is(err, session.ErrReplyTooLarge):
		return session.FinalInfo{}, failed(notifyTooLarge, protocol.Errorf(http.StatusInternalServerError, protocol.BGTooLarge,
			"server application's reply exceeds max_reply_size %d", n.MaxReplySize).App())
	case err != nil:
		return session.FinalInfo{}, err
	}
	info.ReplyURL = replyURL(r, st.ID)
	info.ReplySize = size
	info.ReplyModified = time.Now().UTC().Truncate(time.Second)
	return info, nil
}

// failureResult names a failed exchange for notifications_total.
func failureResult(perr *protocol.Error) string {
	if perr.Status == http.StatusRequestTimeout {
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

// resolveAgainst resolves a possibly relative URL against base and
// requires an http or https result.
func resolveAgainst(base, ref string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parsing URL %q: %w", base, err)
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("parsing URL %q: %w", ref, err)
	}
	u := b.ResolveReference(r)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", errors.New("not an http URL")
	}
	return u.String(), nil
}
