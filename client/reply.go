package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// DefaultMaxReplySize caps a reply kept in memory: 1 MB, the limit of
// GetReplyData on Windows.
const DefaultMaxReplySize = 1 << 20

// replyChunkSize is the most bytes one reply GET asks for, so that each
// request stays within RequestTimeout.
const replyChunkSize = 8 << 20

// errReplyTooLarge is returned by the in-memory reply sink when the reply
// exceeds its cap.
var errReplyTooLarge = errors.New("reply too large")

// resolveReplyURL resolves a BITS-Reply-URL against the session URL. IIS
// sends a relative path with backslashes; they are taken as slashes.
func resolveReplyURL(base, ref string) (string, error) {
	bu, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	ru, err := url.Parse(strings.ReplaceAll(strings.TrimSpace(ref), `\`, "/"))
	if err != nil {
		return "", fmt.Errorf("%s %.100q is not a URL: %v", protocol.HeaderReplyURL, ref, err)
	}
	abs := bu.ResolveReference(ru)
	abs.Fragment, abs.RawFragment = "", ""
	if s := strings.ToLower(abs.Scheme); (s != "http" && s != "https") || abs.Host == "" {
		return "", fmt.Errorf("%s %.100q is not an http or https URL", protocol.HeaderReplyURL, ref)
	}
	return abs.String(), nil
}

// capWriter keeps what is written in memory, up to max bytes.
type capWriter struct {
	buf bytes.Buffer
	max int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	if int64(w.buf.Len())+int64(len(p)) > w.max {
		return 0, errReplyTooLarge
	}
	return w.buf.Write(p)
}

// trackWriter remembers write errors, to tell them apart from read errors
// of io.Copy.
type trackWriter struct {
	w   io.Writer
	err error
}

func (w *trackWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// replyDownload is the state of one reply download.
type replyDownload struct {
	u    *upload
	url  *url.URL
	auth bool
	dst  *trackWriter
	keep *capWriter
	size int64 // -1: unknown
	got  int64
}

// downloadReply fetches the reply of an upload-reply session as Windows
// does: a HEAD for the size, then single-range GETs with
// Accept-Encoding: identity, resuming after failures from the last byte
// received.
func (u *upload) downloadReply() error {
	ru, err := url.Parse(u.res.ReplyURL)
	if err != nil {
		return err
	}
	d := &replyDownload{u: u, url: ru, size: -1}
	su, _ := url.Parse(u.sess().URL)
	d.auth = sameHost(ru, u.origURL) || (su != nil && sameHost(ru, su))
	var sinks []io.Writer
	if u.opts.Reply != nil {
		sinks = append(sinks, u.opts.Reply)
	}
	if u.opts.KeepReply {
		maxSize := u.opts.MaxReplySize
		if maxSize <= 0 {
			maxSize = DefaultMaxReplySize
		}
		d.keep = &capWriter{max: maxSize}
		sinks = append(sinks, d.keep)
	}
	switch len(sinks) {
	case 0:
		d.dst = &trackWriter{w: io.Discard}
	case 1:
		d.dst = &trackWriter{w: sinks[0]}
	default:
		d.dst = &trackWriter{w: io.MultiWriter(sinks...)}
	}
	err = d.run()
	u.res.ReplySize = d.got
	if d.keep != nil {
		u.res.Reply = d.keep.buf.Bytes()
	}
	return err
}

// run performs the HEAD and the GETs.
func (d *replyDownload) run() error {
	for {
		ok, err := d.head()
		if err != nil {
			return err
		}
		if ok {
			break
		}
	}
	if err := d.checkKeep(); err != nil {
		return err
	}
	for d.size < 0 || d.got < d.size {
		if err := d.get(); err != nil {
			return err
		}
	}
	return nil
}

// checkKeep fails early when the reply is known to exceed the in-memory
// cap.
func (d *replyDownload) checkKeep() error {
	if d.keep != nil && d.size > d.keep.max {
		return d.tooLarge()
	}
	return nil
}

func (d *replyDownload) tooLarge() error {
	return &Error{Packet: protocol.PacketUnknown, Code: protocol.BGTooLarge,
		Message: fmt.Sprintf("reply is larger than MaxReplySize (%d bytes)", d.keep.max)}
}

// request sends one HEAD or GET for the reply.
func (d *replyDownload) request(method, rng string) (*http.Response, context.CancelFunc, error) {
	c := d.u.c
	ctx, cancel := c.requestContext(d.u.ctx)
	req, err := http.NewRequestWithContext(ctx, method, d.url.String(), nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header["Accept"] = []string{"*/*"}
	req.Header["Accept-Encoding"] = []string{"identity"}
	req.Header["User-Agent"] = []string{c.userAgent()}
	if rng != "" {
		req.Header["Range"] = []string{rng}
	}
	if d.auth {
		c.setAuth(req)
	}
	hc, err := c.httpClient()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return resp, cancel, nil
}

// failed handles a failed reply request; it returns nil to retry.
func (d *replyDownload) failed(err error, fatal bool) error {
	return d.u.x.r.failed(protocol.PacketUnknown, err, fatal)
}

// statusErr turns a reply response into an error and reports whether it
// is worth retrying: 408 and 5xx other than 501 and 505 are.
func statusErr(resp *http.Response) (error, bool) {
	err := parseAck(resp).Err(protocol.PacketUnknown)
	if err == nil {
		err = &Error{Packet: protocol.PacketUnknown, Status: resp.StatusCode, Code: protocol.HTTPError(resp.StatusCode)}
	}
	st := resp.StatusCode
	transient := st == http.StatusRequestTimeout ||
		(st >= 500 && st <= 599 && st != http.StatusNotImplemented && st != http.StatusHTTPVersionNotSupported)
	return err, transient
}

// drain reads a little of an unwanted body so the connection can be reused,
// and closes it.
func drain(resp *http.Response, cancel context.CancelFunc) {
	_, _ = io.CopyN(io.Discard, resp.Body, maxAckBody)
	resp.Body.Close()
	cancel()
}

// head learns the size of the reply. It returns true when done, false to
// retry.
func (d *replyDownload) head() (bool, error) {
	resp, cancel, err := d.request(http.MethodHead, "")
	if err != nil {
		return false, d.failed(err, false)
	}
	drain(resp, cancel)
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.ContentLength >= 0 {
			d.size = resp.ContentLength
		}
		return true, nil
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return true, nil // no HEAD: learn the size from the first GET
	}
	serr, transient := statusErr(resp)
	return false, d.failed(serr, !transient)
}

// get asks for the next range of the reply and copies what arrives.
func (d *replyDownload) get() error {
	rng := "bytes=" + strconv.FormatInt(d.got, 10) + "-"
	end := int64(-1)
	if d.size >= 0 {
		end = min(d.size, d.got+replyChunkSize) - 1
		rng += strconv.FormatInt(end, 10)
	}
	resp, cancel, err := d.request(http.MethodGet, rng)
	if err != nil {
		return d.failed(err, false)
	}
	defer drain(resp, cancel)
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return d.invalid(resp, "reply sent with Content-Encoding %.40q after Accept-Encoding: identity", enc)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		r, err := protocol.ParseContentRange(cr)
		switch {
		case err != nil:
			return d.invalid(resp, "206 with bad Content-Range %.80q: %v", cr, err)
		case r.First != d.got || r.Len() <= 0 || (end >= 0 && r.Last > end):
			return d.invalid(resp, "206 with Content-Range %q for Range %q", cr, rng)
		case d.size >= 0 && r.Total != d.size:
			return d.invalid(resp, "206 with Content-Range %q for a reply of %d bytes", cr, d.size)
		case resp.ContentLength >= 0 && resp.ContentLength != r.Len():
			return d.invalid(resp, "206 with Content-Length %d for Content-Range %q", resp.ContentLength, cr)
		}
		if d.size < 0 {
			d.size = r.Total
			if err := d.checkKeep(); err != nil {
				return err
			}
		}
		return d.copy(resp, r.Len())
	case http.StatusOK:
		if d.got != 0 {
			return &Error{Packet: protocol.PacketUnknown, Status: resp.StatusCode, Code: BGInsufficientRangeSupport,
				Message: fmt.Sprintf("server answered 200 to Range %q instead of resuming at byte %d", rng, d.got)}
		}
		switch {
		case resp.ContentLength < 0:
			return d.invalid(resp, "200 without Content-Length")
		case d.size >= 0 && resp.ContentLength != d.size:
			return d.invalid(resp, "200 with Content-Length %d for a reply of %d bytes", resp.ContentLength, d.size)
		}
		d.size = resp.ContentLength
		if err := d.checkKeep(); err != nil {
			return err
		}
		return d.copy(resp, d.size)
	case http.StatusRequestedRangeNotSatisfiable:
		// The only valid reason is an empty reply asked for with "bytes=0-".
		cr := strings.TrimSpace(resp.Header.Get("Content-Range"))
		if d.got == 0 && d.size <= 0 && (cr == "" || strings.EqualFold(strings.Join(strings.Fields(cr), " "), "bytes */0")) {
			d.size = 0
			return nil
		}
		return d.invalid(resp, "416 with Content-Range %.80q for Range %q", cr, rng)
	}
	serr, transient := statusErr(resp)
	return d.failed(serr, !transient)
}

// invalid returns the fatal error for a reply response that breaks HTTP's
// range rules.
func (d *replyDownload) invalid(resp *http.Response, format string, args ...any) error {
	return &Error{Packet: protocol.PacketUnknown, Status: resp.StatusCode, Code: protocol.BGInvalidServerResponse,
		Message: fmt.Sprintf(format, args...)}
}

// copy moves n body bytes to the sink. A short body is a transient
// failure; whatever arrived counts as progress.
func (d *replyDownload) copy(resp *http.Response, n int64) error {
	w, err := io.CopyN(d.dst, resp.Body, n)
	d.got += w
	if w > 0 {
		d.u.x.r.progress()
	}
	switch {
	case err == nil:
		return nil
	case d.dst.err != nil:
		if errors.Is(d.dst.err, errReplyTooLarge) {
			return d.tooLarge()
		}
		return fmt.Errorf("bits client: writing the reply: %w", d.dst.err)
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF
	}
	return d.failed(fmt.Errorf("reading the reply body: %w", err), false)
}
