package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/s3store"
	"github.com/caddy-bits/caddy-bits/session"
)

// Sessions says which nodes may continue a session.
type Sessions struct {
	// "local": a session lives on the node that created it, as the
	// session_dir holds it (a farm pins clients with host_id). "shared":
	// any node of a farm whose handlers use the same S3 storage continues
	// any session, by forwarding its packets to the node that holds it,
	// or by taking it over when that node cannot be reached. Default:
	// local.
	Mode string `json:"mode,omitempty"`

	// The URL other nodes send this node the packets of its sessions at,
	// such as "https://10.0.0.5:8443", for a node behind NAT. Default: the
	// scheme and local address of the connection each session was created
	// or taken over on.
	Advertise string `json:"advertise,omitempty"`

	// How long a node tries to connect to a session's owner before it
	// takes the session over. Default: 3 seconds.
	ForwardTimeout caddy.Duration `json:"forward_timeout,omitempty"`
}

// validate checks the options (provisioned, placeholders replaced).
func (s *Sessions) validate() error {
	if s.Mode != sessionsLocal && s.Mode != sessionsShared {
		return fmt.Errorf("sessions must be local or shared, got %q", s.Mode)
	}
	if s.ForwardTimeout < 0 {
		return fmt.Errorf("sessions forward_timeout must not be negative, got %s", time.Duration(s.ForwardTimeout))
	}
	if a := s.Advertise; a != "" {
		if u, err := url.Parse(a); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("sessions advertise must be an http or https URL with a host and no path, got %q", a)
		}
	}
	return nil
}

// Session modes.
const (
	sessionsLocal  = "local"
	sessionsShared = "shared"
)

// defaultForwardTimeout is the default of forward_timeout.
const defaultForwardTimeout = 3 * time.Second

// forwardedHeader marks a packet one node forwarded to another, so that
// it is never forwarded twice. Its value is a MAC under the farm's key of
// the session id, so that only nodes can set it.
const forwardedHeader = "BITS-Forwarded"

// sharedDoc is a session's shared state, the object at
// s3store.Storage.StateKey in the bucket.
type sharedDoc struct {
	// Owner is the node that serves the session (its id), Addr the URL
	// it receives forwarded packets at, and Epoch the number of times the
	// session changed owner.
	Owner string `json:"owner"`
	Addr  string `json:"addr"`
	Epoch int64  `json:"epoch"`
	// Closed marks a session that was closed or cancelled.
	Closed bool `json:"closed,omitempty"`
	// State is the session's state, sealed with the farm's key.
	State json.RawMessage `json:"state,omitempty"`
}

// Metadata of the shared state objects, so that a HEAD request tells the
// owner.
const (
	metaOwner = "bits-owner"
	metaEpoch = "bits-epoch"
)

// owned is what a node knows of a session it owns.
type owned struct {
	mu    sync.Mutex
	etag  string // of the last state this node published
	addr  string
	epoch int64
	moved atomic.Bool // another node took the session over
}

// sharedNode is one node's part in a farm that shares sessions: it
// publishes the states of its sessions to the bucket, forwards the
// packets of other nodes' sessions, and takes over those whose owner is
// gone. One serves each session store.
type sharedNode struct {
	st      *s3store.Storage
	store   *session.Store
	id      string // this node's id
	key     []byte
	logger  *zap.Logger
	timeout time.Duration

	// advertise is the configured address, if any.
	advertise string

	owned sync.Map // protocol.SessionID → *owned

	// owners caches the owner of other nodes' sessions.
	ownersMu sync.Mutex
	owners   map[protocol.SessionID]sharedDoc

	client *http.Client
}

// maxCachedOwners bounds the cache of other nodes' sessions.
const maxCachedOwners = 100_000

// nodeID returns the id of the node whose session directory is dir,
// made at first use.
func nodeID(dir string) (string, error) {
	name := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(name)
	if err == nil && len(strings.TrimSpace(string(b))) == 32 {
		return strings.TrimSpace(string(b)), nil
	}
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(r[:])
	if err := os.WriteFile(name, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the node id: %w", err)
	}
	return id, nil
}

// newSharedNode returns the node of store, whose storage is st.
func newSharedNode(dir string, st *s3store.Storage, key []byte, cfg *Sessions, logger *zap.Logger) (*sharedNode, error) {
	id, err := nodeID(dir)
	if err != nil {
		return nil, err
	}
	n := &sharedNode{
		st: st, id: id, key: key, logger: logger,
		timeout:   time.Duration(cfg.ForwardTimeout),
		advertise: strings.TrimSuffix(cfg.Advertise, "/"),
		owners:    make(map[protocol.SessionID]sharedDoc),
	}
	if n.timeout <= 0 {
		n.timeout = defaultForwardTimeout
	}
	n.client = &http.Client{
		Transport: n.transport(),
		// Redirects are the owner's answer to relay, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return n, nil
}

// start checks, once the store is open, that this node still owns each
// session it recovered: one taken over while this node was down is
// forgotten (its new owner holds it), and one never published is
// published now.
func (n *sharedNode) start(ctx context.Context, store *session.Store) {
	n.store = store
	n.st.SetGuard(n.guard)
	n.st.SetAfterRecord(func(ctx context.Context, id protocol.SessionID) error { return n.publish(ctx, id, "") })
	for _, st := range store.List() {
		err := n.guard(ctx, st.ID)
		switch {
		case errors.Is(err, session.ErrMoved):
			n.forget(st.ID)
		case err != nil:
			n.logger.Warn("checking the owner of a recovered session", zap.String("session_id", st.ID.Wire()), zap.Error(err))
		}
	}
}

// ownedOf returns what the node knows of its session id, making an empty
// entry if needed.
func (n *sharedNode) ownedOf(id protocol.SessionID) *owned {
	v, _ := n.owned.LoadOrStore(id, &owned{})
	return v.(*owned)
}

// guard is the storage's guard (s3store.Guard): before a part upload, a
// commit or an abort, it checks with a HEAD request that this node still
// owns the session. A session it never published (recovered from before
// the farm shared sessions) is published.
func (n *sharedNode) guard(ctx context.Context, id protocol.SessionID) error {
	o := n.ownedOf(id)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.moved.Load() {
		return fmt.Errorf("%w: session %s", session.ErrMoved, id)
	}
	etag, meta, err := n.st.HeadShared(ctx, n.st.StateKey(id))
	switch {
	case errors.Is(err, s3store.ErrNoObject):
		return n.publishLocked(ctx, id, o, "")
	case err != nil:
		return err
	}
	epoch, _ := strconv.ParseInt(meta[metaEpoch], 10, 64)
	if meta[metaOwner] != n.id || (o.etag != "" && epoch < o.epoch) {
		o.moved.Store(true)
		return fmt.Errorf("%w: session %s belongs to node %s", session.ErrMoved, id, meta[metaOwner])
	}
	o.etag, o.epoch = etag, epoch
	return nil
}

// publish writes the current state of session id, which this node owns,
// to the bucket, if it still owns it. addr is the owner's address for a
// session published the first time.
func (n *sharedNode) publish(ctx context.Context, id protocol.SessionID, addr string) error {
	o := n.ownedOf(id)
	o.mu.Lock()
	defer o.mu.Unlock()
	return n.publishLocked(ctx, id, o, addr)
}

// publishLocked is publish with o.mu held.
func (n *sharedNode) publishLocked(ctx context.Context, id protocol.SessionID, o *owned, addr string) error {
	if o.moved.Load() {
		return fmt.Errorf("%w: session %s", session.ErrMoved, id)
	}
	sealed, _, err := n.store.Sealed(id)
	if err != nil {
		return err
	}
	if addr != "" {
		o.addr = addr
	}
	ifMatch := o.etag
	if ifMatch == "" && o.epoch == 0 && addr == "" {
		// Recovered, and never published by this process: take the
		// current ETag if this node owns the session, or create it.
		etag, meta, err := n.st.HeadShared(ctx, n.st.StateKey(id))
		switch {
		case err == nil && meta[metaOwner] == n.id:
			ifMatch = etag
			o.epoch, _ = strconv.ParseInt(meta[metaEpoch], 10, 64)
			if doc, err := n.load(ctx, id); err == nil && o.addr == "" {
				o.addr = doc.Addr
			}
		case err == nil:
			o.moved.Store(true)
			return fmt.Errorf("%w: session %s belongs to node %s", session.ErrMoved, id, meta[metaOwner])
		case !errors.Is(err, s3store.ErrNoObject):
			return err
		}
	}
	if o.epoch == 0 {
		o.epoch = 1
	}
	if o.addr == "" {
		o.addr = n.advertise
	}
	doc := sharedDoc{Owner: n.id, Addr: o.addr, Epoch: o.epoch, State: sealed}
	etag, err := n.put(ctx, id, doc, ifMatch)
	if errors.Is(err, s3store.ErrPreconditionFailed) {
		o.moved.Store(true)
		return fmt.Errorf("%w: session %s was taken over", session.ErrMoved, id)
	}
	if err != nil {
		return err
	}
	o.etag = etag
	return nil
}

// put writes doc as the shared state of id, with ifMatch as
// s3store.Storage.PutShared takes it.
func (n *sharedNode) put(ctx context.Context, id protocol.SessionID, doc sharedDoc, ifMatch string) (string, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	meta := map[string]string{metaOwner: doc.Owner, metaEpoch: strconv.FormatInt(doc.Epoch, 10)}
	return n.st.PutShared(ctx, n.st.StateKey(id), b, ifMatch, meta)
}

// load reads the shared state of id.
func (n *sharedNode) load(ctx context.Context, id protocol.SessionID) (sharedDoc, error) {
	doc, _, err := n.loadTagged(ctx, id)
	return doc, err
}

// loadTagged reads the shared state of id with its ETag.
func (n *sharedNode) loadTagged(ctx context.Context, id protocol.SessionID) (sharedDoc, string, error) {
	b, etag, err := n.st.GetShared(ctx, n.st.StateKey(id))
	if err != nil {
		return sharedDoc{}, "", err
	}
	var doc sharedDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return sharedDoc{}, "", fmt.Errorf("decoding the shared state of session %s: %w", id, err)
	}
	return doc, etag, nil
}

// created publishes a session this node just created (or revived) on the
// connection of r, refusing to replace any state of its id.
func (n *sharedNode) created(ctx context.Context, r *http.Request, id protocol.SessionID) error {
	return n.publish(ctx, id, n.selfAddr(r))
}

// decided publishes a session's state once its outcome is recorded, with
// its reply, before the upload is placed.
func (n *sharedNode) decided(ctx context.Context, st session.State, replyPath string) error {
	if st.Final != nil && !st.Final.ReplyStatic && st.Final.ReplySize > 0 {
		f, err := os.Open(replyPath) //nolint:gosec // a path the session store gave
		if err != nil {
			return fmt.Errorf("publishing the reply of session %s: %w", st.ID, err)
		}
		err = n.st.PutSharedFrom(ctx, n.st.ReplyKey(st.ID), f, st.Final.ReplySize)
		f.Close()
		if err != nil {
			return err
		}
	}
	return n.publish(ctx, st.ID, "")
}

// removed records in the bucket that a session this node owned is gone:
// a closed or cancelled one leaves a tombstone, so that a repeated Close
// or Cancel at any node gets 200 and its id is never revived; a reaped
// one leaves nothing.
func (n *sharedNode) removed(st session.State, reason session.RemoveReason) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := n.ownedOf(st.ID)
	o.mu.Lock()
	defer func() {
		o.mu.Unlock()
		n.owned.Delete(st.ID)
	}()
	if o.moved.Load() {
		return
	}
	var err error
	if reason == session.RemovedReaped {
		err = n.st.DeleteShared(ctx, n.st.StateKey(st.ID))
	} else {
		ifMatch := o.etag
		if ifMatch == "" {
			ifMatch = s3store.Unconditional
		}
		_, err = n.put(ctx, st.ID, sharedDoc{Owner: n.id, Addr: o.addr, Epoch: o.epoch, Closed: true}, ifMatch)
	}
	if st.Final != nil && st.Final.ReplySize > 0 {
		err = errors.Join(err, n.st.DeleteShared(ctx, n.st.ReplyKey(st.ID)))
	}
	if err != nil && !errors.Is(err, s3store.ErrPreconditionFailed) {
		n.logger.Warn("recording a removed session in the bucket", zap.String("session_id", st.ID.Wire()), zap.Error(err))
	}
}

// moved reports whether this node learnt that another one took session
// id over.
func (n *sharedNode) moved(id protocol.SessionID) bool {
	v, ok := n.owned.Load(id)
	return ok && v.(*owned).moved.Load()
}

// forget drops a session another node took over, after aborting the
// multipart uploads this node started that the new owner does not know.
func (n *sharedNode) forget(id protocol.SessionID) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, local, err := n.store.Sealed(id); err == nil && len(local.Data) > 0 {
		var shared json.RawMessage
		if doc, err := n.load(ctx, id); err == nil {
			if st, err := n.store.OpenSealed(doc.State); err == nil {
				shared = st.Data
			}
		}
		if err := n.st.AbortOrphans(ctx, n.st.Key(local.Destination()), local.Data, shared); err != nil {
			n.logger.Warn("aborting the uploads of a session another node took over", zap.String("session_id", id.Wire()), zap.Error(err))
		}
	}
	if err := n.store.Forget(id); err != nil {
		n.logger.Warn("forgetting a session another node took over", zap.String("session_id", id.Wire()), zap.Error(err))
	}
	n.owned.Delete(id)
}

// selfAddr returns the address other nodes reach this node at for a
// session created or taken over by r.
func (n *sharedNode) selfAddr(r *http.Request) string {
	if n.advertise != "" {
		return n.advertise
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return scheme + "://" + a.String()
	}
	return scheme + "://" + r.Host
}

// mark returns the forwarded header's value for session id.
func (n *sharedNode) mark(id protocol.SessionID) string {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("bits forwarded\x00"))
	m.Write([]byte(id.Bare()))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// forwarded reports whether r was forwarded by another node of the farm.
func (n *sharedNode) forwarded(r *http.Request, id protocol.SessionID) bool {
	v := r.Header[http.CanonicalHeaderKey(forwardedHeader)]
	return len(v) == 1 && hmac.Equal([]byte(v[0]), []byte(n.mark(id)))
}

// cachedOwner returns the cached shared state of another node's session.
func (n *sharedNode) cachedOwner(id protocol.SessionID) (sharedDoc, bool) {
	n.ownersMu.Lock()
	defer n.ownersMu.Unlock()
	doc, ok := n.owners[id]
	return doc, ok
}

// cacheOwner remembers the owner of another node's session, or forgets
// it with an empty doc.
func (n *sharedNode) cacheOwner(id protocol.SessionID, doc sharedDoc) {
	n.ownersMu.Lock()
	defer n.ownersMu.Unlock()
	if doc.Owner == "" {
		delete(n.owners, id)
		return
	}
	if len(n.owners) >= maxCachedOwners {
		for k := range n.owners {
			delete(n.owners, k)
			break
		}
	}
	doc.State = nil
	n.owners[id] = doc
}
