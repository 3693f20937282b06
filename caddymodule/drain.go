package caddymodule

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// countingBody counts the bytes read from a request body, so that the
// handler knows how much of it is left when it answers.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countBody wraps the request's body in a countingBody.
func countBody(r *http.Request) *countingBody {
	b := &countingBody{ReadCloser: r.Body}
	r.Body = b
	return b
}

// drain reads and discards what is left of the request body before an
// answer, so that a client that writes its whole body before it reads
// (as Windows does) gets the answer instead of a reset connection. It
// reads at most drain_limit bytes for at most drain_timeout; a body with
// more left, or one that does not arrive in time, is left unread and the
// connection is closed after the answer. A request that expects 100
// Continue and was not read at all is not drained: its client has not
// sent the body, and Go closes the connection after the answer.
func (h *Handler) drain(w http.ResponseWriter, r *http.Request) {
	body, ok := r.Body.(*countingBody)
	if !ok || r.ContentLength <= 0 {
		return
	}
	read := body.n.Load()
	left := r.ContentLength - read
	if left <= 0 {
		return
	}
	if read == 0 && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	if left > h.DrainLimit || strings.EqualFold(w.Header().Get("Connection"), "close") {
		w.Header().Set("Connection", "close")
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(time.Duration(h.DrainTimeout)))
	n, err := io.CopyN(io.Discard, body, left)
	_ = rc.SetReadDeadline(time.Time{})
	if n < left || (err != nil && err != io.EOF) {
		w.Header().Set("Connection", "close")
	}
}

// interruptRead returns the function that makes a request's body read
// fail at once, when a newer request for the same session takes it over.
// It runs on the newer request's goroutine and touches nothing but the
// connection's read deadline.
func interruptRead(w http.ResponseWriter) func() {
	rc := http.NewResponseController(w)
	return func() { _ = rc.SetReadDeadline(time.Now()) }
}
