package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// UploadOptions are the per-upload settings of [Client.Upload]. The zero
// value (or nil) downloads a reply, if the server offers one, and discards
// it.
type UploadOptions struct {
	// Reply receives the reply of an upload-reply session (the resource at
	// BITS-Reply-URL). It is written sequentially, each byte once, also when
	// the download resumes after a failure. Nil discards the reply; it is
	// still downloaded, as the Windows client does, unless SkipReply is set.
	Reply io.Writer
	// KeepReply keeps the reply in Result.Reply, up to MaxReplySize bytes;
	// a larger reply fails the upload with BG_E_TOO_LARGE (like
	// GetReplyData on Windows). It works together with Reply. It is false
	// by default.
	KeepReply bool
	// MaxReplySize caps a reply kept by KeepReply; 0 means
	// DefaultMaxReplySize.
	MaxReplySize int64
	// SkipReply closes the session without downloading the reply. It is
	// false (download the reply) by default.
	SkipReply bool
	// ContentName, when set, is sent as Content-Name on Fragment and
	// Close-Session packets, as Windows clients send the local file name.
	// It is empty (no Content-Name) by default, except that
	// [Client.UploadFile] defaults it to the file's base name.
	ContentName string
	// Progress, when set, is called after every fragment Ack (200 or 416)
	// of the upload, from the goroutine running the upload. It is nil by
	// default.
	Progress func(Progress)
}

// Result describes an upload. Upload returns it also with an error, then
// describing how far the upload got. Its session fields describe the last
// session; Sessions lists all of them.
type Result struct {
	// SessionID is the canonical id of the last session, or empty when the
	// server's id is not a braced GUID (see WireSessionID).
	SessionID protocol.SessionID
	// WireSessionID is the id of the last session exactly as the server
	// sent it.
	WireSessionID string
	// SessionURL is where the packets of the last session went: the upload
	// URL, or the BITS-Host-Id node. Pass it with SessionID to
	// [Client.Cancel] to clean up after a failed upload.
	SessionURL string
	// Size is the size of the upload.
	Size int64
	// Acked is the last server-confirmed offset (BITS-Received-Content-Range).
	Acked int64
	// Complete reports that the server confirmed all Size bytes.
	Complete bool
	// ReplyURL is the absolute BITS-Reply-URL of the final fragment Ack,
	// resolved against SessionURL, or empty.
	ReplyURL string
	// ReplySize is the number of reply bytes downloaded.
	ReplySize int64
	// Reply holds the reply when UploadOptions.KeepReply is set.
	Reply []byte
	// Restarts counts how many times the upload started over with a new
	// Create-Session because the server lost the session.
	Restarts int
	// Fragments counts the fragment Acks (200 or 416) over all sessions.
	Fragments int
	// HostID is the BITS-Host-Id of the last session, or empty.
	HostID string
	// FellBack reports that the last session left its BITS-Host-Id node
	// for the original URL after the fallback timeout.
	FellBack bool
	// Sessions lists every session the upload created, in order; the last
	// one is the session the fields above describe. It is empty when no
	// Create-Session succeeded.
	Sessions []SessionResult
}

// SessionResult describes one session of an upload.
type SessionResult struct {
	// SessionID is the canonical id of the session, or empty when the
	// server's id is not a braced GUID.
	SessionID protocol.SessionID
	// WireSessionID is the id exactly as the server sent it.
	WireSessionID string
	// URL is where the last packets of the session went: the upload URL,
	// or the BITS-Host-Id node.
	URL string
	// HostID is the session's BITS-Host-Id, or empty.
	HostID string
	// FellBack reports that the session left its BITS-Host-Id node for the
	// upload URL after the fallback timeout.
	FellBack bool
	// Acked is the last offset the server confirmed in this session.
	Acked int64
	// Fragments counts the fragment Acks (200 or 416) of this session.
	Fragments int
	// Err is why the upload left the session for a new one: the server's
	// BG_E_SESSION_NOT_FOUND answer. It is nil for the last session.
	Err error
}

// Upload uploads size bytes of src to url, as a Windows BITS upload job
// does: an optional Ping, Create-Session, Fragments, the reply download of
// an upload-reply session, and Close-Session. Transient failures are
// retried, lost sessions restarted and oversized fragments shrunk, as the
// package documentation describes; the first fatal failure, or running
// out of retries or restarts, ends the upload with an error, which wraps an
// [*Error] when the server answered. Cancelling ctx stops the upload
// without sending Cancel-Session; use [Client.Cancel] with the Result's
// SessionURL and SessionID to discard the server's session.
//
// The returned Result is never nil.
func (c *Client) Upload(ctx context.Context, url string, src io.ReaderAt, size int64, opts *UploadOptions) (*Result, error) {
	res := &Result{Size: size}
	if opts == nil {
		opts = &UploadOptions{}
	}
	if size < 0 {
		return res, fmt.Errorf("bits client: negative upload size %d", size)
	}
	if src == nil && size > 0 {
		return res, errors.New("bits client: nil upload source")
	}
	u, err := checkURL(url)
	if err != nil {
		return res, err
	}
	if _, err := c.httpClient(); err != nil {
		return res, err
	}
	up := &upload{
		c: c, ctx: ctx, origURL: u, src: src, size: size, opts: *opts, res: res,
		x:     c.newExchanger(ctx, url),
		sizer: c.newFragmentSizer(),
	}
	up.x.onFallback = up.fellBack
	return res, up.run()
}

// UploadFile uploads the regular file at path to url with [Client.Upload].
// Unless opts sets ContentName, the file's base name is sent as
// Content-Name.
func (c *Client) UploadFile(ctx context.Context, url, path string, opts *UploadOptions) (*Result, error) {
	var o UploadOptions
	if opts != nil {
		o = *opts
	}
	f, err := os.Open(path)
	if err != nil {
		return &Result{}, fmt.Errorf("bits client: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return &Result{}, fmt.Errorf("bits client: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return &Result{}, fmt.Errorf("bits client: %s is not a regular file", path)
	}
	if o.ContentName == "" {
		o.ContentName = contentName(filepath.Base(path))
	}
	return c.Upload(ctx, url, f, fi.Size(), &o)
}

// contentName returns name if it can be sent as a header value, else "".
func contentName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return ""
		}
	}
	return name
}

// checkURL validates an upload URL.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bits client: %w", err)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return nil, fmt.Errorf("bits client: upload URL %q is not http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bits client: upload URL %q has no host", raw)
	}
	return u, nil
}

// restartError asks for a new session: the server lost the current one.
type restartError struct{ err error }

func (e *restartError) Error() string { return e.err.Error() }
func (e *restartError) Unwrap() error { return e.err }

// upload is the state of one Upload call.
type upload struct {
	c       *Client
	ctx     context.Context
	origURL *url.URL
	src     io.ReaderAt
	size    int64
	opts    UploadOptions
	res     *Result

	x     *exchanger
	sizer fragmentSizer
	acked int64
}

// sess is the current session, or nil before Create-Session.
func (u *upload) sess() *Session { return u.x.sess }

// current is the entry of the current session in the Result.
func (u *upload) current() *SessionResult { return &u.res.Sessions[len(u.res.Sessions)-1] }

// run drives the whole upload.
func (u *upload) run() error {
	if !u.c.SkipPing {
		if err := u.x.ping(); err != nil {
			return err
		}
	}
	for {
		err := u.runSession()
		var re *restartError
		if !errors.As(err, &re) {
			if err != nil {
				return err
			}
			break
		}
		if u.res.Restarts >= u.c.maxRestarts() {
			return fmt.Errorf("bits client: fragment: giving up after %d restarts: %w", u.res.Restarts, re.err)
		}
		u.current().Err = re.err
		u.res.Restarts++
		u.x.forget()
	}
	u.res.Complete = true
	if u.res.ReplyURL != "" && !u.opts.SkipReply {
		if err := u.downloadReply(); err != nil {
			return err
		}
	}
	return u.closeSession()
}

// fellBack records that the session left its host-id node.
func (u *upload) fellBack() {
	s := u.current()
	s.URL, s.FellBack = u.sess().URL, true
	u.res.SessionURL, u.res.FellBack = s.URL, true
}

// runSession creates a session and sends fragments until the server holds
// the whole upload. It returns a *restartError when the session is lost.
func (u *upload) runSession() error {
	const p = protocol.PacketCreateSession
	var (
		s    *Session
		cerr error
	)
	_, act, err := u.x.exchange(p, func(url string) (*Ack, error) {
		var a *Ack
		s, a, cerr = u.c.createSession(u.ctx, url, u.opts.ContentName)
		return a, cerr
	})
	switch {
	case err != nil:
		return err
	case act != actOK || cerr != nil:
		// An error status, or a success that broke the protocol.
		return cerr
	}
	u.startSession(s)
	return u.sendFragments()
}

// startSession adopts a new session.
func (u *upload) startSession(s *Session) {
	u.x.adopt(s, u.c.HostIDFallbackOverride)
	u.acked = 0
	u.res.SessionID, u.res.WireSessionID, u.res.SessionURL = s.ID, s.WireID, s.URL
	u.res.HostID, u.res.FellBack, u.res.Acked = s.HostID, false, 0
	u.res.Sessions = append(u.res.Sessions, SessionResult{SessionID: s.ID, WireSessionID: s.WireID, URL: s.URL, HostID: s.HostID})
}

// sendFragments sends the upload from the server-confirmed offset until the
// server holds all of it.
func (u *upload) sendFragments() error {
	const p = protocol.PacketFragment
	for {
		var off, n int64
		a, act, err := u.x.exchange(p, func(string) (*Ack, error) {
			off = u.acked
			n = min(u.sizer.size, u.size-off)
			src := &sourceReads{u: u}
			a, err := u.sess().fragment(u.ctx, n, src.opener(off, n), off, u.size)
			if lerr := src.failure(); lerr != nil {
				return nil, &stopError{lerr}
			}
			if err != nil && errors.Is(err, context.DeadlineExceeded) && u.ctx.Err() == nil {
				u.sizer.timedOut(n)
			}
			return a, err
		})
		if err != nil {
			return err
		}
		switch act {
		case actOK:
			u.sizer.acked(n, u.x.lastDur, u.x.rtt)
			done, err := u.fragmentAcked(a, off)
			if err != nil || done {
				return err
			}
		case actShrink:
			if !u.sizer.tooLarge(n) {
				var e *Error
				if !errors.As(a.Err(p), &e) {
					return a.Err(p)
				}
				e.Message = fmt.Sprintf("server answered %d to a fragment of %d bytes, not above the minimum fragment size %d", a.Status, n, u.sizer.floor)
				return e
			}
		case actSessionLost:
			return &restartError{a.Err(p)}
		default:
			return a.Err(p)
		}
	}
}

// fragmentAcked handles a 2xx or 416 fragment Ack for a fragment that
// started at off. It reports whether the upload is complete.
func (u *upload) fragmentAcked(a *Ack, off int64) (bool, error) {
	const p = protocol.PacketFragment
	if !a.IsAck() {
		return false, invalidResponse(p, a, "%d response has BITS-Packet-Type %q, want Ack", a.Status, a.PacketType)
	}
	if !a.HasReceived {
		raw, _ := protocol.GetHeader(a.Header, protocol.HeaderReceivedContentRange)
		return false, invalidResponse(p, a, "%d Ack has no valid %s (%.40q)", a.Status, protocol.HeaderReceivedContentRange, raw)
	}
	if a.Received > u.size {
		return false, invalidResponse(p, a, "%d Ack reports %s %d, beyond the upload size %d", a.Status, protocol.HeaderReceivedContentRange, a.Received, u.size)
	}
	u.x.fb.succeeded()
	u.res.Fragments++
	prev := u.acked
	u.acked, u.res.Acked = a.Received, a.Received
	cur := u.current()
	cur.Fragments++
	cur.Acked = a.Received
	if u.opts.Progress != nil {
		u.opts.Progress(Progress{
			SessionID: u.sess().ID, Acked: u.acked, Total: u.size,
			Fragments: u.res.Fragments, Restarts: u.res.Restarts, FragmentSize: u.sizer.size,
		})
	}
	if u.acked == u.size {
		u.x.r.progress()
		if a.ReplyURL != "" {
			ru, err := resolveReplyURL(u.sess().URL, a.ReplyURL)
			if err != nil {
				return false, invalidResponse(p, a, "%v", err)
			}
			u.res.ReplyURL = ru
		}
		return true, nil
	}
	switch {
	case u.acked > prev:
		u.x.r.progress()
		return false, nil
	case u.acked < prev:
		// The server lost data and asks for it again: resend at once, but
		// count it, so a server that keeps rewinding cannot loop forever.
		return false, u.x.r.fail(p, noProgress(a, off), false, false)
	default:
		return false, u.x.r.failed(p, noProgress(a, off), false)
	}
}

// noProgress is the error of a fragment Ack that did not move the
// server-confirmed offset forward.
func noProgress(a *Ack, off int64) *Error {
	return &Error{Packet: protocol.PacketFragment, Status: a.Status, Code: protocol.BGNoProgress, Ack: a,
		Message: fmt.Sprintf("server answered %d with %s %d to a fragment starting at %d", a.Status, protocol.HeaderReceivedContentRange, a.Received, off)}
}

// sourceReads hands out request bodies that read a fragment straight from
// the upload source, and records the first failure to read it. Streaming
// the fragment, rather than reading it into a buffer first, costs no
// memory however large fragments grow, and the transport may go on
// reading a body after the response arrived without harm.
type sourceReads struct {
	u   *upload
	mu  sync.Mutex
	err error
}

// opener returns the body opener of the n bytes at off.
func (r *sourceReads) opener(off, n int64) func() io.ReadCloser {
	return func() io.ReadCloser {
		return io.NopCloser(&sourceBody{r: r, off: off, end: off + n})
	}
}

// fail records a failure to read the source.
func (r *sourceReads) fail(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// failure returns the first failure to read the source, or nil.
func (r *sourceReads) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// sourceBody reads the bytes off..end-1 of the upload source.
type sourceBody struct {
	r        *sourceReads
	off, end int64
}

func (b *sourceBody) Read(p []byte) (int, error) {
	if b.off >= b.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.end-b.off)]
	n, err := b.r.u.src.ReadAt(p, b.off)
	b.off += int64(n)
	if n == len(p) {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return n, b.r.fail(&Error{Packet: protocol.PacketFragment, Code: BGLocalFileChanged, Context: ContextLocalFile,
			Message: fmt.Sprintf("the upload source ended at offset %d, before its size %d", b.off, b.r.u.size)})
	}
	return n, b.r.fail(fmt.Errorf("bits client: reading the upload source at offset %d: %w", b.off, err))
}

// closeSession sends Close-Session until the server acknowledges it.
func (u *upload) closeSession() error {
	const p = protocol.PacketCloseSession
	a, act, err := u.x.exchange(p, func(string) (*Ack, error) {
		return u.sess().Close(u.ctx)
	})
	switch {
	case err != nil:
		return err
	case act == actOK, act == actSessionLost:
		// The upload completed, so a session the server no longer knows
		// (a lost Ack of an earlier Close) is as good as closed.
		return nil
	}
	return a.Err(p)
}
