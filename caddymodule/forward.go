package caddymodule

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/s3store"
	"github.com/caddy-bits/caddy-bits/session"
)

// Results of routing a request for a session this node does not hold.
type route int

const (
	// routeLocal: the session is (now) this node's; handle the request.
	routeLocal route = iota
	// routeAnswered: the request was forwarded, or answered, already.
	routeAnswered
	// routeUnknown: no node has the session; handle the request as for
	// an unknown session (it may be revived).
	routeUnknown
)

// route finds the owner of session id, which this node does not hold,
// and forwards r to it; when the owner cannot be reached, or r was
// forwarded to this node already, this node takes the session over.
func (n *sharedNode) route(w http.ResponseWriter, r *http.Request, h *Handler, id protocol.SessionID, pkt *protocol.Packet) route {
	forwarded := n.forwarded(r, id)
	// unreachable holds the owners a forward failed to reach: only a
	// fresh state that still names one of them makes a takeover.
	unreachable := map[string]bool{}
	for attempt := range 4 {
		doc, fresh := n.cachedOwner(id)
		fresh = !fresh || attempt > 0
		var etag string
		if fresh {
			var err error
			doc, etag, err = n.loadTagged(r.Context(), id)
			switch {
			case errors.Is(err, s3store.ErrNoObject):
				n.cacheOwner(id, sharedDoc{})
				return routeUnknown
			case err != nil:
				h.answer(w, r, pkt, err)
				return routeAnswered
			}
			n.cacheOwner(id, doc)
		}
		if doc.Closed {
			if pkt != nil && (pkt.Type == protocol.PacketCloseSession || pkt.Type == protocol.PacketCancelSession) {
				h.writeAck(w, r, pkt, protocol.Ack{SessionID: id})
			} else {
				h.answer(w, r, pkt, session.ErrClosed)
			}
			return routeAnswered
		}
		if !forwarded && doc.Owner != n.id && doc.Addr != "" && !unreachable[doc.Addr] {
			ok, err := n.forward(w, r, doc.Addr, id)
			if ok {
				return routeAnswered
			}
			n.logger.Info("session owner unreachable", zap.String("session_id", id.Wire()),
				zap.String("owner", doc.Addr), zap.Error(err))
			if errors.Is(err, errBodyStarted) {
				h.answer(w, r, pkt, protocol.Errorf(http.StatusServiceUnavailable, protocol.HTTPError(http.StatusServiceUnavailable),
					"forwarding to the session's node failed: %v", err))
				return routeAnswered
			}
			// Perhaps another node took it over meanwhile: look again.
			unreachable[doc.Addr] = true
			n.cacheOwner(id, sharedDoc{})
			continue
		}
		if !fresh {
			continue
		}
		err := n.takeOver(r, id, doc, etag)
		if errors.Is(err, s3store.ErrPreconditionFailed) {
			// Another node took it over first: forward to it.
			n.cacheOwner(id, sharedDoc{})
			forwarded = false
			continue
		}
		if err != nil {
			h.answer(w, r, pkt, err)
			return routeAnswered
		}
		return routeLocal
	}
	h.answer(w, r, pkt, protocol.Errorf(http.StatusServiceUnavailable, protocol.HTTPError(http.StatusServiceUnavailable),
		"session %s keeps changing owner", id))
	return routeAnswered
}

// takeOver makes this node the owner of session id, whose shared state
// doc had ETag etag: it replaces the state with one naming this node
// (If-Match), then adopts the session from it, with its reply.
func (n *sharedNode) takeOver(r *http.Request, id protocol.SessionID, doc sharedDoc, etag string) error {
	ctx := r.Context()
	st, err := n.store.OpenSealed(doc.State)
	if err != nil {
		return fmt.Errorf("taking over session %s: %w", id, err)
	}
	addr := n.selfAddr(r)
	next := sharedDoc{Owner: n.id, Addr: addr, Epoch: doc.Epoch + 1, State: doc.State}
	o := n.ownedOf(id)
	o.mu.Lock()
	newTag, err := n.put(ctx, id, next, etag)
	if err == nil {
		o.etag, o.addr, o.epoch = newTag, addr, next.Epoch
		o.moved.Store(false)
	}
	o.mu.Unlock()
	if err != nil {
		return err
	}
	n.cacheOwner(id, sharedDoc{})
	var reply io.Reader
	if st.Final != nil && !st.Final.ReplyStatic && st.Final.ReplySize > 0 {
		rc, err := n.st.OpenShared(ctx, n.st.ReplyKey(id))
		if err != nil {
			return fmt.Errorf("taking over session %s: %w", id, err)
		}
		defer rc.Close()
		reply = rc
	}
	sess, err := n.store.Adopt(doc.State, reply)
	if err != nil {
		return err
	}
	countTakeover()
	n.logger.Info("session taken over",
		zap.String("session_id", id.Wire()),
		zap.String("previous_owner", doc.Addr),
		zap.Int64("epoch", next.Epoch),
		zap.Int64("received", sess.State().Received))
	return nil
}

// errBodyStarted means a forward failed after part of the request body
// was sent: the owner may have kept it, so the session is not taken over.
var errBodyStarted = errors.New("request body partly forwarded")

// hopHeaders are the hop-by-hop headers, which a forward does not pass on.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// forward sends r to the node at addr and relays its answer. It reports
// false, with the reason, when the node could not be reached before any
// of the body was sent (the caller may take the session over); an answer
// relayed, even an error, is true.
func (n *sharedNode) forward(w http.ResponseWriter, r *http.Request, addr string, id protocol.SessionID) (bool, error) {
	body := &countingReader{r: r.Body}
	ctx := context.WithValue(r.Context(), forwardHostKey{}, r.Host)
	req, err := http.NewRequestWithContext(ctx, r.Method, addr+r.URL.RequestURI(), body) //nolint:gosec // addr is the owning node, from the session state in the bucket
	if err != nil {
		return false, err
	}
	if r.ContentLength == 0 {
		req.Body = http.NoBody
	}
	req.ContentLength = r.ContentLength
	req.Host = r.Host
	maps.Copy(req.Header, r.Header)
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Header[forwardedHeader] = []string{n.mark(id)}
	start := time.Now()
	resp, err := n.client.Do(req) //nolint:gosec // see NewRequestWithContext above
	if err != nil {
		countForward(forwardUnreachable)
		if body.n.Load() > 0 {
			return false, fmt.Errorf("%w: %w", errBodyStarted, err)
		}
		return false, err
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	dst := w.Header()
	for k, v := range resp.Header {
		dst[exactHeaderName(k)] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(w, resp.Body)
	countForward(forwardOK)
	n.logger.Debug("packet forwarded to the session's node",
		zap.String("session_id", id.Wire()), zap.String("owner", addr),
		zap.Int("status", resp.StatusCode), zap.Duration("duration", time.Since(start)), zap.Error(err))
	return true, nil
}

// forwardHostKey carries the original Host of a forwarded request to the
// TLS dialer, which verifies the owner's certificate for that name.
type forwardHostKey struct{}

// transport returns the transport of forwards: a connection that cannot
// be made within the forward timeout counts as an unreachable owner; an
// https owner is verified for the host name the client used, since every
// node serves the same site.
func (n *sharedNode) transport() *http.Transport {
	dialer := &net.Dialer{Timeout: n.timeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: dialer.DialContext,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			host, _ := ctx.Value(forwardHostKey{}).(string)
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			tc := tls.Client(conn, &tls.Config{ServerName: host, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
			hctx, cancel := context.WithTimeout(ctx, n.timeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}

// exactHeaders maps the canonical form of each BITS header to its exact
// spelling, which a relayed answer keeps.
var exactHeaders = func() map[string]string {
	m := make(map[string]string)
	for _, h := range []string{
		protocol.HeaderPacketType, protocol.HeaderSupportedProtocols, protocol.HeaderProtocol,
		protocol.HeaderSessionID, protocol.HeaderReceivedContentRange, protocol.HeaderReplyURL,
		protocol.HeaderHostID, protocol.HeaderHostIDFallbackTimeout, protocol.HeaderErrorCode,
		protocol.HeaderErrorContext,
	} {
		m[http.CanonicalHeaderKey(h)] = h
	}
	return m
}()

// exactHeaderName returns the exact spelling of a BITS header named in
// any case, or name.
func exactHeaderName(name string) string {
	if !strings.HasPrefix(strings.ToLower(name), "bits-") {
		return name
	}
	if e, ok := exactHeaders[http.CanonicalHeaderKey(name)]; ok {
		return e
	}
	return name
}
