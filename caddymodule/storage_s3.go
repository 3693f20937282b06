package caddymodule

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/caddy-bits/caddy-bits/s3store"
	"github.com/caddy-bits/caddy-bits/session"
)

func init() {
	caddy.RegisterModule(S3Storage{})
}

// S3Storage keeps uploads in an S3-compatible object store (Amazon S3,
// MinIO, Ceph RGW, SeaweedFS, versitygw and others): module
// http.handlers.bits_upload.storage.s3. Each upload is sent to the bucket
// part by part as it arrives, so session_dir holds less than two parts of
// each upload, and a finished upload is placed as the object at prefix +
// the request path, only if no object is there (unless allow_overwrite).
// The handler's root is not used.
//
// The store must honour conditional writes (If-None-Match: * and
// If-Match), which is checked when the storage is opened. See the
// s3store package for how the bytes are kept, and docs/s3.md for the
// settings of each store.
type S3Storage struct {
	// The bucket uploads are placed in. It must exist. Required.
	Bucket string `json:"bucket,omitempty"`

	// Put before the request path to make an object's key: with prefix
	// "uploads/", an upload to /bits/a.txt is placed at
	// "uploads/bits/a.txt". Default: "", the path without its leading
	// slash is the key.
	Prefix string `json:"prefix,omitempty"`

	// The URL of an S3-compatible store, such as "https://minio:9000".
	// Default: "", Amazon S3 in the configured region.
	Endpoint string `json:"endpoint,omitempty"`

	// The region requests are signed for. Default: "us-east-1" with an
	// endpoint; otherwise the SDK's default configuration (AWS_REGION,
	// ~/.aws/config).
	Region string `json:"region,omitempty"`

	// Puts the bucket in the URL's path rather than its host name, as
	// most S3-compatible stores need. Default: false.
	PathStyle bool `json:"path_style,omitempty"`

	// Static credentials; placeholders such as {env.S3_SECRET} are
	// replaced. Default: both empty, which uses the SDK's credential
	// chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, shared files,
	// container and instance roles).
	AccessKey string `json:"access_key,omitempty"`
	SecretKey string `json:"secret_key,omitempty"`

	// The size of the parts an upload is sent in while it arrives; an
	// upload that would need more than 10,000 parts uses larger ones.
	// session_dir holds up to two parts of each upload in progress.
	// Default: 16 MiB; at least 5 MiB, at most 5 GiB.
	PartSize int64 `json:"part_size,omitempty"`

	// The time one request to the store may take, its retries included.
	// A fragment that waits longer for the store gets 503, which clients
	// retry. Default: 30 seconds.
	RequestTimeout caddy.Duration `json:"request_timeout,omitempty"`

	// A PEM file of the certificate authorities to trust for an https
	// endpoint, instead of the system's. Default: "", the system's.
	CAFile string `json:"ca_file,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (S3Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bits_upload.storage.s3",
		New: func() caddy.Module { return new(S3Storage) },
	}
}

// s3TailDir names the directory below session_dir of the bytes not yet in
// the bucket.
const s3TailDir = "s3-parts"

// config returns the s3store configuration, with placeholders replaced.
func (s *S3Storage) config(ctx caddy.Context, sessionDir string) (s3store.Config, error) {
	repl := caddy.NewReplacer()
	cfg := s3store.Config{
		Bucket:         repl.ReplaceKnown(s.Bucket, ""),
		Prefix:         repl.ReplaceKnown(s.Prefix, ""),
		Endpoint:       repl.ReplaceKnown(s.Endpoint, ""),
		Region:         repl.ReplaceKnown(s.Region, ""),
		PathStyle:      s.PathStyle,
		AccessKey:      repl.ReplaceKnown(s.AccessKey, ""),
		SecretKey:      repl.ReplaceKnown(s.SecretKey, ""),
		PartSize:       s.PartSize,
		RequestTimeout: time.Duration(s.RequestTimeout),
		TailDir:        filepath.Join(sessionDir, s3TailDir),
		Logger:         ctx.Logger(),
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return cfg, errors.New("s3 storage: access_key and secret_key go together; set both or neither")
	}
	if caFile := repl.ReplaceKnown(s.CAFile, ""); caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return cfg, fmt.Errorf("s3 storage: reading ca_file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("s3 storage: ca_file %s holds no PEM certificate", caFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	return cfg, nil
}

// Validate checks the options that need no store to check.
func (s *S3Storage) Validate() error {
	if s.Bucket == "" {
		return errors.New("s3 storage: bucket is required")
	}
	if s.PartSize != 0 && (s.PartSize < s3store.MinPartSize || s.PartSize > s3store.MaxPartSize) {
		return fmt.Errorf("s3 storage: part_size %s is not between 5 MiB and 5 GiB", humanize.IBytes(uint64(s.PartSize)))
	}
	if s.RequestTimeout < 0 {
		return fmt.Errorf("s3 storage: request_timeout must not be negative, got %s", time.Duration(s.RequestTimeout))
	}
	return nil
}

// OpenStorage implements Storage: it checks that the bucket exists, that
// the credentials may use it, and that the store honours conditional
// writes, on which placing an upload without overwriting relies.
func (s *S3Storage) OpenStorage(ctx caddy.Context, sessionDir string) (session.Storage, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	cfg, err := s.config(ctx, sessionDir)
	if err != nil {
		return nil, err
	}
	st, err := s3store.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := st.ProbeConditionalWrites(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// StorageKey implements Storage: the endpoint, bucket and prefix, where the
// bytes are; not the credentials or part size, which may change.
func (s *S3Storage) StorageKey() string {
	repl := caddy.NewReplacer()
	return "s3:" + repl.ReplaceKnown(s.Endpoint, "") + "/" + repl.ReplaceKnown(s.Bucket, "") + "/" + repl.ReplaceKnown(s.Prefix, "")
}

// Local implements Storage.
func (*S3Storage) Local() bool { return false }

// UnmarshalCaddyfile sets up the module from Caddyfile tokens:
//
//	storage s3 {
//		bucket          <name>
//		prefix          <key prefix>
//		endpoint        <url>
//		region          <region>
//		path_style
//		access_key      <id>
//		secret_key      <secret>
//		part_size       <size>
//		request_timeout <duration>
//		ca_file         <pem file>
//	}
func (s *S3Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "path_style" {
			if d.NextArg() {
				return d.ArgErr()
			}
			s.PathStyle = true
			continue
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "bucket":
			s.Bucket = val
		case "prefix":
			s.Prefix = val
		case "endpoint":
			s.Endpoint = val
		case "region":
			s.Region = val
		case "access_key":
			s.AccessKey = val
		case "secret_key":
			s.SecretKey = val
		case "ca_file":
			s.CAFile = val
		case "part_size":
			size, err := humanize.ParseBytes(val)
			if err != nil {
				return d.Errf("parsing part_size %q: %v", val, err)
			}
			if size > s3store.MaxPartSize {
				return d.Errf("part_size %q is over 5 GiB", val)
			}
			s.PartSize = int64(size)
		case "request_timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return d.Errf("parsing request_timeout %q: %v", val, err)
			}
			s.RequestTimeout = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized storage s3 option %q", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ Storage               = (*S3Storage)(nil)
	_ caddy.Validator       = (*S3Storage)(nil)
	_ caddyfile.Unmarshaler = (*S3Storage)(nil)
)
