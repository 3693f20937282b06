// Package caddymodule is the Caddy HTTP handler "bits_upload": the server
// side of the BITS upload protocol that Windows clients (bitsadmin,
// Start-BitsTransfer, the BITS COM API) use for background uploads.
package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler implements the server side of the BITS upload protocol
// ([MC-BUP]). It answers BITS_POST requests (Ping, Create-Session,
// Fragment, Close-Session, Cancel-Session) with BITS Acks, keeps each
// upload session durably on local disk, and places every completed upload
// at the file its URL maps to under Root, the way file_server maps URLs
// to files for GET. Every other request goes to the next handler
// untouched.
//
// A session survives client reconnects, server restarts (even kill -9) and
// config reloads: sessions live in SessionDir, shared by every config that
// names the same directory. An upload appears at its destination only
// when its last byte arrived, atomically and complete.
//
// With Notify, every completed upload is handed to a server application
// instead, and its reply is served to the client at the upload URL with a
// bits_reply query parameter (GET and HEAD with ranges).
//
// The handler sets these placeholders on every BITS request, for access
// logs (log_append) and later handlers; each is set as soon as it is
// known:
//
// Placeholder | Description
// ------------|-------------
// `{http.bits_upload.session_id}` | The session id, braced and upper case, as clients see it
// `{http.bits_upload.packet_type}` | The packet type: Ping, Create-Session, Fragment, Close-Session or Cancel-Session
// `{http.bits_upload.received}` | The bytes of the upload the session holds after the request
// `{http.bits_upload.total}` | The upload's total size, once a fragment announced it
// `{http.bits_upload.destination}` | The absolute path the upload is placed at
type Handler struct {
	// The directory uploads are stored under. The destination of an upload
	// is this root joined with the percent-decoded request path. Paths
	// that would leave the root are refused. Placeholders are expanded per
	// request. Default: `{http.vars.root}` (set by the `root` directive) if
	// set, else the current working directory.
	Root string `json:"root,omitempty"`

	// The directory that holds upload sessions while they are in
	// progress. It must not be inside Root, and should not be inside any
	// directory a file server serves. Configs that name the same directory
	// share its sessions, which is what lets uploads survive a config
	// reload. Only one Caddy process may use a directory at a time.
	// `{env.*}` placeholders are expanded. Default: the `bits_upload/sessions`
	// folder of Caddy's data directory.
	SessionDir string `json:"session_dir,omitempty"`

	// The largest upload accepted, in bytes. A session whose first fragment
	// announces a larger total is refused with 500 and BG_E_TOO_LARGE
	// (0x80200020) before anything is written. Default: 0, unlimited.
	MaxSize int64 `json:"max_size,omitempty"`

	// How long a session may go without any request before it is deleted
	// with its partial data, like IIS's BITSSessionTimeout. A client that
	// comes back later gets BG_E_SESSION_NOT_FOUND and starts over. Sessions
	// are checked every quarter of this timeout (at most every 5 minutes,
	// at least every 250ms). Default: 14 days.
	SessionTimeout caddy.Duration `json:"session_timeout,omitempty"`

	// Whether an upload may replace an existing file. When false, a
	// Create-Session for an existing destination is refused with 403 and
	// E_ACCESSDENIED (0x80070005), and the check is repeated atomically when
	// the upload is committed, so of two sessions racing for one
	// destination only the first to complete wins. Default: false (as
	// IIS's BITSAllowOverwrites).
	AllowOverwrite bool `json:"allow_overwrite,omitempty"`

	// The name of this node in a web farm whose nodes keep sessions on
	// local disk. It is returned as BITS-Host-Id in every Create-Session
	// Ack, and clients then send the rest of the session to this host
	// instead of the one in the upload URL. It must be a bare host name or
	// IP address (no scheme or port) that reaches this node on the same
	// port and scheme. Global placeholders such as `{system.hostname}` and
	// `{env.*}` are expanded. Default: empty, no BITS-Host-Id.
	HostID string `json:"host_id,omitempty"`

	// How long a client keeps trying the BITS-Host-Id host before it falls
	// back to the original URL (and starts the upload over there). It is
	// sent as BITS-Host-Id-Fallback-Timeout, in whole seconds, only
	// together with HostID. Default: 1 day (as IIS's
	// BITSHostIdFallbackTimeout).
	HostIDFallbackTimeout caddy.Duration `json:"host_id_fallback_timeout,omitempty"`

	// Hands every completed upload to a server application over HTTP, by
	// value or by reference, and serves the application's reply to the
	// client (upload-reply jobs). With it, an upload is placed at its
	// destination only when the application asks for that. Default: none;
	// every upload is placed at its destination.
	Notify *Notify `json:"notify,omitempty"`

	// How many open sessions one user may have at a time, counted per
	// authenticated user ({http.auth.user.id}, which basic_auth and other
	// authentication handlers set; with forward_auth, map the user header
	// the auth service returns onto it) or, without one, per client
	// address as Caddy determines it (so trusted_proxies applies). A
	// Create-Session beyond it gets 503 with ERROR_TOO_MANY_SESS
	// (0x80070045), which clients retry later. Finished sessions count
	// until they are closed or reaped. Clients behind one NAT address
	// share the limit unless they authenticate. A negative value
	// (Caddyfile: `off`) removes the limit. Default: 50, as IIS's
	// BITSNumberOfSessionsLimit.
	MaxSessionsPerUser int `json:"max_sessions_per_user,omitempty"`

	// How long a session that has received no byte may go without a
	// request before it is deleted. Its client loses nothing: it sends
	// its first fragment right after Create-Session, and if it comes back
	// later, it gets BG_E_SESSION_NOT_FOUND and creates a new session,
	// from byte 0 as it would have. It is capped at session_timeout.
	// Default: 10 minutes.
	EmptySessionTimeout caddy.Duration `json:"empty_session_timeout,omitempty"`

	// How many bytes of a fragment's body, at most, are read and
	// discarded before an early answer (a gap's 416, a retransmission of
	// held bytes, an unknown session, max_size, a full disk, ...). Windows
	// writes a whole fragment before it reads the answer; without the
	// drain, closing the connection on the unread body would reset it and
	// lose the answer. A body with more left than this is not read, and
	// the connection is closed after the answer. Default: 16 MiB (Windows
	// fragments are at most 13 MB).
	DrainLimit int64 `json:"drain_limit,omitempty"`

	// How long, at most, draining a rejected fragment's body may take
	// before the connection is closed instead. Default: 30 seconds.
	DrainTimeout caddy.Duration `json:"drain_timeout,omitempty"`

	// The free space, in bytes, to keep on the file systems that hold
	// session_dir and root. A Create-Session, or a fragment whose new bytes
	// would leave less than this, gets 500 with ERROR_DISK_FULL
	// (0x80070070) before anything is written; clients retry, and resume
	// once space is freed. Default: 0, no reserve (a full disk is still
	// answered with ERROR_DISK_FULL, and no stored byte is lost).
	MinFreeSpace int64 `json:"min_free_space,omitempty"`

	// Where the bytes of uploads in progress are kept and where finished
	// uploads are placed: a module of the http.handlers.bits_upload.storage
	// namespace. "local" keeps them in session_dir and places uploads below
	// root; "s3" keeps them in an S3-compatible bucket, with at most one
	// part of each upload in session_dir, and places uploads as objects
	// (root is then not used). One session_dir serves one storage.
	// Default: local.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=http.handlers.bits_upload.storage inline_key=module"`

	// Which nodes of a farm may continue a session: "local" (the one that
	// created it) or "shared" (any node using the same S3 storage; see
	// docs/s3.md). Default: local.
	Sessions *Sessions `json:"sessions,omitempty"`

	// Turns off the handler's Prometheus metrics (caddy_bits_upload_*).
	// Default: false, metrics on.
	DisableMetrics bool `json:"disable_metrics,omitempty"`

	store      *pooledStore
	storeKey   string
	storeUser  *storeUser
	obs        *observer
	root       *rootTemplate
	storage    Storage
	sessionDir string // the session directory with symbolic links resolved
	hostID     string
	logger     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bits_upload",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Default values of the options.
const (
	defaultSessionTimeout        = 14 * 24 * time.Hour
	defaultEmptySessionTimeout   = 10 * time.Minute
	defaultHostIDFallbackTimeout = 24 * time.Hour
	defaultMaxSessionsPerUser    = 50
	defaultDrainLimit            = 16 << 20
	defaultDrainTimeout          = 30 * time.Second
)

// Provision sets up the handler: defaults, the shared session store and,
// for a static root, the root directory itself.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	repl := caddy.NewReplacer()

	if h.Root == "" {
		h.Root = "{http.vars.root}"
	}
	dir := repl.ReplaceKnown(h.SessionDir, "")
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "bits_upload", "sessions")
	}
	dir, err := caddy.FastAbs(dir)
	if err != nil {
		return fmt.Errorf("resolving session_dir %q: %v", h.SessionDir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating session_dir: %v", err)
	}
	if h.sessionDir, err = filepath.EvalSymlinks(dir); err != nil {
		return fmt.Errorf("resolving session_dir %q: %v", dir, err)
	}
	if h.storage, err = h.loadStorage(ctx); err != nil {
		return err
	}
	if !h.storage.Local() {
		// Destinations are keys; the root plays no part.
		h.Root = "/"
	}
	if h.Sessions == nil {
		h.Sessions = &Sessions{}
	}
	if h.Sessions.Mode == "" {
		h.Sessions.Mode = sessionsLocal
	}
	h.Sessions.Advertise = repl.ReplaceKnown(h.Sessions.Advertise, "")
	if err := h.Sessions.validate(); err != nil {
		return err
	}
	if h.Sessions.Mode == sessionsShared {
		if _, ok := h.storage.(*S3Storage); !ok {
			return fmt.Errorf("sessions shared needs storage s3: the nodes share sessions through its bucket")
		}
	}
	if h.root, err = parseRootTemplate(h.Root); err != nil {
		return err
	}
	if h.root.static != "" && h.storage.Local() {
		if err := os.MkdirAll(h.root.static, 0o755); err != nil {
			return fmt.Errorf("creating root: %v", err)
		}
		if _, err := h.resolveRoot(h.root.static); err != nil {
			return err
		}
	}

	if h.SessionTimeout == 0 {
		h.SessionTimeout = caddy.Duration(defaultSessionTimeout)
	}
	if h.HostIDFallbackTimeout == 0 {
		h.HostIDFallbackTimeout = caddy.Duration(defaultHostIDFallbackTimeout)
	}
	if h.EmptySessionTimeout == 0 {
		h.EmptySessionTimeout = caddy.Duration(defaultEmptySessionTimeout)
	}
	if h.MaxSessionsPerUser == 0 {
		h.MaxSessionsPerUser = defaultMaxSessionsPerUser
	}
	if h.DrainLimit == 0 {
		h.DrainLimit = defaultDrainLimit
	}
	if h.DrainTimeout == 0 {
		h.DrainTimeout = caddy.Duration(defaultDrainTimeout)
	}
	h.hostID = repl.ReplaceKnown(h.HostID, "")

	if h.Notify != nil {
		if err := h.Notify.provision(ctx); err != nil {
			return err
		}
	}

	h.obs = &observer{ctx: ctx, metrics: !h.DisableMetrics}
	if h.obs.metrics {
		if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
			return fmt.Errorf("registering metrics: %v", err)
		}
	}
	eventsApp, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("getting events app: %v", err)
	}
	h.obs.events = eventsApp.(*caddyevents.App)

	// The store is keyed by its resolved directory, so that two names of
	// one directory share one store.
	store, err := acquireStore(ctx, h.sessionDir, time.Duration(h.SessionTimeout), h.storage, h.StorageRaw, h.Sessions)
	if err != nil {
		return err
	}
	h.store, h.storeKey = store, h.sessionDir
	h.storeUser = &storeUser{
		timeout:      time.Duration(h.SessionTimeout),
		emptyTimeout: time.Duration(h.EmptySessionTimeout),
		obs:          h.obs,
	}
	store.register(h.storeUser)
	return nil
}

// Validate checks the configuration for consistency.
func (h *Handler) Validate() error {
	if h.MaxSize < 0 {
		return fmt.Errorf("max_size must not be negative, got %d", h.MaxSize)
	}
	if h.SessionTimeout < 0 {
		return fmt.Errorf("session_timeout must not be negative, got %s", time.Duration(h.SessionTimeout))
	}
	if h.HostIDFallbackTimeout < 0 {
		return fmt.Errorf("host_id_fallback_timeout must not be negative, got %s", time.Duration(h.HostIDFallbackTimeout))
	}
	if h.hostID != "" {
		if err := validateHostID(h.hostID); err != nil {
			return err
		}
	}
	if h.Notify != nil {
		if err := h.Notify.validate(); err != nil {
			return err
		}
	}
	if h.EmptySessionTimeout < 0 {
		return fmt.Errorf("empty_session_timeout must not be negative, got %s", time.Duration(h.EmptySessionTimeout))
	}
	if h.DrainLimit < 0 {
		return fmt.Errorf("drain_limit must not be negative, got %d", h.DrainLimit)
	}
	if h.DrainTimeout < 0 {
		return fmt.Errorf("drain_timeout must not be negative, got %s", time.Duration(h.DrainTimeout))
	}
	if h.MinFreeSpace < 0 {
		return fmt.Errorf("min_free_space must not be negative, got %d", h.MinFreeSpace)
	}

	return nil
}

// Cleanup releases the handler's reference to its session store. The
// store stays open while another config uses it.
func (h *Handler) Cleanup() error {
	if h.Notify != nil {
		h.Notify.cleanup()
	}
	if h.storeKey != "" {
		h.store.unregister(h.storeUser)
		_, err := stores.Delete(h.storeKey)
		h.storeKey = ""
		return err
	}
	return nil
}

// checkSeparate refuses a session directory inside the upload root (an
// upload could then plant files in the session store) and a root inside
// the session directory. Both paths are absolute and clean; callers pass
// them with symbolic links resolved, so that a link cannot hide one
// inside the other.
func checkSeparate(root, sessionDir string) error {
	if within(root, sessionDir) {
		return fmt.Errorf("session_dir %s must not be inside root %s", sessionDir, root)
	}
	if within(sessionDir, root) {
		return fmt.Errorf("root %s must not be inside session_dir %s", root, sessionDir)
	}
	return nil
}

// within reports whether path is dir or lies below it. Both are absolute
// and clean.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// validateHostID checks that a host id is a bare host name or IP address.
func validateHostID(host string) error {
	if len(host) > 300 {
		return fmt.Errorf("host_id is longer than 300 characters")
	}
	if strings.ContainsAny(host, "/?#@ \t") || strings.Contains(host, "://") {
		return fmt.Errorf("host_id %q must be a bare host name or IP address", host)
	}
	if strings.HasPrefix(host, "[") {
		if inner, ok := strings.CutSuffix(host, "]"); ok {
			if ip := net.ParseIP(inner[1:]); ip != nil && ip.To4() == nil {
				return nil
			}
			return fmt.Errorf("host_id %q is not a bracketed IPv6 address", host)
		}
		if _, _, err := net.SplitHostPort(host); err == nil {
			return fmt.Errorf("host_id %q must not include a port; every node serves the same port", host)
		}
		return fmt.Errorf("host_id %q is not a bracketed IPv6 address", host)
	}
	if strings.Contains(host, ":") {
		if ip := net.ParseIP(host); ip != nil {
			return nil
		}
		return fmt.Errorf("host_id %q must not include a port; every node serves the same port", host)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
