package client

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// exchanger carries the packets of one operation (an upload, or the
// cancellation of a session) through the one retry loop of the package:
// fall back from a failing BITS-Host-Id node, Ping when the protocol asks
// for it, send, retry transient failures with backoff, and classify the Ack.
type exchanger struct {
	c   *Client
	ctx context.Context
	r   retrier

	orig     string   // where packets go before a session exists
	sess     *Session // nil before Create-Session
	needPing bool     // Ping before the next packet

	onHost     bool // packets go to the BITS-Host-Id node
	fb         hostFallback
	onFallback func() // called after a fallback, if set

	rtt     time.Duration // shortest Ping or Create-Session exchange on its connection; 0: none yet
	lastDur time.Duration // duration of the last send
}

// newExchanger returns an exchanger for packets to url.
func (c *Client) newExchanger(ctx context.Context, url string) *exchanger {
	return &exchanger{c: c, ctx: ctx, r: c.newRetrier(ctx), orig: url}
}

// target is where the next packet goes.
func (x *exchanger) target() string {
	if x.sess == nil {
		return x.orig
	}
	return x.sess.URL
}

// stopError marks an error of a send function that ends the exchange at
// once, such as a failure to read the upload source.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// exchange sends packet p with send, which is given the current target URL,
// until an Ack arrives that is not a transient failure, and returns that
// Ack with its classification (never actTransient). Before each attempt it
// falls back from a failing host-id node and sends the Ping the protocol
// requires after a transport error or a move to a new host. Transport
// errors and transient Acks are retried after the backoff, until the
// retries are used up; transport errors that retrying cannot fix end the
// exchange at once, as does an error of send wrapped in a *stopError.
// send returns a nil Ack exactly when no response arrived.
func (x *exchanger) exchange(p protocol.PacketType, send func(url string) (*Ack, error)) (*Ack, action, error) {
	for {
		x.checkFallback()
		if x.needPing && p != protocol.PacketPing {
			if err := x.ping(); err != nil {
				return nil, actFatal, err
			}
		}
		start := x.c.clock()
		a, err := send(x.target())
		x.lastDur = x.c.clock().Sub(start)
		if a == nil {
			if se, ok := errors.AsType[*stopError](err); ok {
				return nil, actFatal, se.err
			}
			x.hostFailure(err)
			if e := x.r.failed(p, err, false); e != nil {
				return nil, actFatal, e
			}
			x.needPing = true // Windows pings before resuming
			continue
		}
		if rt := a.exchange; rt > 0 && (p == protocol.PacketPing || p == protocol.PacketCreateSession) {
			if x.rtt == 0 || rt < x.rtt {
				x.rtt = rt
			}
		}
		act := decide(p, a)
		if act != actTransient {
			return a, act, nil
		}
		err = a.Err(p)
		x.hostFailure(err)
		if e := x.r.failed(p, err, false); e != nil {
			return nil, actFatal, e
		}
	}
}

// ping pings the current target until it answers with a 2xx Ack.
func (x *exchanger) ping() error {
	const p = protocol.PacketPing
	a, act, err := x.exchange(p, func(url string) (*Ack, error) {
		return x.c.send(x.ctx, url, p.String(), "", nil, nil)
	})
	switch {
	case err != nil:
		return err
	case act != actOK:
		return a.Err(p)
	case !a.IsAck():
		return invalidResponse(p, a, "%d response is not a BITS Ack", a.Status)
	}
	x.needPing = false
	return nil
}

// hostFailure starts the host-id fallback timer when err is a transport
// error or a 5xx answer of the host-id node.
func (x *exchanger) hostFailure(err error) {
	if !x.onHost {
		return
	}
	var be *Error
	if !errors.As(err, &be) || be.Status >= 500 {
		x.fb.failed(time.Now())
	}
}

// checkFallback moves the session back to its original URL when the
// host-id node has been failing for longer than the fallback timeout.
func (x *exchanger) checkFallback() {
	if !x.onHost || !x.fb.due(time.Now()) {
		return
	}
	x.sess.URL = x.sess.OriginalURL
	x.onHost = false
	x.fb = hostFallback{}
	x.needPing = true
	x.r.progress() // a new node gets a fresh set of retries
	if x.onFallback != nil {
		x.onFallback()
	}
}

// adopt makes s the session later packets belong to, moving to its
// BITS-Host-Id node if it has one.
func (x *exchanger) adopt(s *Session, fallbackOverride time.Duration) {
	x.sess = s
	x.onHost, x.fb = false, hostFallback{}
	if s.HostID != "" {
		timeout := s.HostIDFallback
		if fallbackOverride > 0 {
			timeout = fallbackOverride
		}
		x.onHost = true
		x.fb = hostFallback{timeout: timeout}
		x.needPing = true // Windows pings the host-id node first
	}
}

// forget drops the session, for a new Create-Session.
func (x *exchanger) forget() {
	x.sess, x.onHost, x.fb, x.needPing = nil, false, hostFallback{}, false
}
