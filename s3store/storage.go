package s3store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// Sizes of parts.
const (
	// DefaultPartSize is the part size when Config.PartSize is 0.
	DefaultPartSize = 16 << 20
	// MinPartSize is the smallest part S3 accepts, except for an
	// upload's last part.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part S3 accepts.
	MaxPartSize = 5 << 30
	// maxParts is the most parts one multipart upload may have.
	maxParts = 10_000
	// maxKeyLength is the longest key S3 accepts, in bytes.
	maxKeyLength = 1024
)

// DefaultRequestTimeout is the time a request to the store may take when
// Config.RequestTimeout is 0.
const DefaultRequestTimeout = 30 * time.Second

// sessionMeta is the user metadata, sent as x-amz-meta-bits-session, that
// names the session whose upload an object is, so that Placed recognises
// it.
const sessionMeta = "bits-session"

// Config configures a Storage. The zero value of every optional field
// selects its default.
type Config struct {
	// Bucket is the bucket that uploads are placed in. Required.
	Bucket string

	// Prefix is put before a destination's path to make its key: with
	// Prefix "uploads/", an upload to "a/b.txt" is placed at
	// "uploads/a/b.txt". Default: "", the path is the key.
	Prefix string

	// Endpoint is the URL of an S3-compatible store, such as
	// "http://127.0.0.1:7070". Default: "", Amazon S3 itself.
	Endpoint string

	// Region is the region requests are signed for. Default: "us-east-1"
	// when Endpoint is set; otherwise the region of the SDK's default
	// configuration (AWS_REGION, the shared configuration file).
	Region string

	// PathStyle puts the bucket in the URL's path
	// (http://host/bucket/key) instead of its host name
	// (http://bucket.host/key), as most S3-compatible stores need.
	// Default: false.
	PathStyle bool

	// AccessKey and SecretKey are static credentials. Default: both
	// empty, which uses the SDK's default credential chain (environment,
	// shared files, container and instance roles).
	AccessKey string
	SecretKey string

	// PartSize is the size of the parts an upload is sent to the bucket
	// in, while it arrives. An upload of more than 10,000 parts of this
	// size uses parts of a whole number of MiB large enough for it.
	// Default: 16 MiB; at least 5 MiB and at most 5 GiB.
	PartSize int64

	// TailDir is a local directory for the bytes of each session that
	// are not in the bucket yet: less than one part, plus at most one
	// complete part while it is uploaded. Required; created if missing.
	TailDir string

	// StatePrefix is the key prefix of the storage's own objects (the
	// staging objects of uploads that are read back before they are
	// placed). Destinations under it are refused. Default: Prefix +
	// ".bits/".
	StatePrefix string

	// RequestTimeout bounds each request to the store, with its retries.
	// An upload of a part must finish within it. Default: 30 seconds.
	RequestTimeout time.Duration

	// Logger receives the storage's log lines. Default: a no-op logger.
	Logger *zap.Logger

	// HTTPClient sends the requests to the store. Default: the SDK's
	// client. For tests.
	HTTPClient *http.Client
}

// Storage is a [session.Storage] that keeps the bytes of upload sessions
// in an S3-compatible object store; see the package documentation. It is
// safe for concurrent use.
type Storage struct {
	cfg    Config
	client *s3.Client
	logger *zap.Logger

	// syncUploads makes Append upload each complete part before it
	// returns, instead of in the background. For measurements.
	syncUploads bool

	// open holds the Data of the sessions in use, by id, for Locate.
	open sync.Map

	// guard and afterRecord are the hooks of shared sessions.
	guard       atomic.Pointer[Guard]
	afterRecord atomic.Pointer[AfterRecord]
}

// New returns the storage cfg describes, after checking that the bucket
// exists and the credentials may use it.
func New(ctx context.Context, cfg Config) (*Storage, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 storage: no bucket configured")
	}
	if cfg.TailDir == "" {
		return nil, errors.New("s3 storage: no tail directory configured")
	}
	if !filepath.IsAbs(cfg.TailDir) {
		return nil, fmt.Errorf("s3 storage: tail directory %q is not absolute", cfg.TailDir)
	}
	cfg.TailDir = filepath.Clean(cfg.TailDir)
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize {
		return nil, fmt.Errorf("s3 storage: part size %d is not between %d and %d bytes", cfg.PartSize, MinPartSize, MaxPartSize)
	}
	if cfg.StatePrefix == "" {
		cfg.StatePrefix = cfg.Prefix + ".bits/"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Region == "" && cfg.Endpoint != "" {
		cfg.Region = "us-east-1"
	}
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := os.MkdirAll(cfg.TailDir, 0o700); err != nil {
		return nil, fmt.Errorf("s3 storage: creating tail directory: %w", err)
	}

	opts := []func(*awsconfig.LoadOptions) error{
		// The SDK's default, an aws-chunked body with a CRC32 trailer,
		// is refused by many S3-compatible stores
		// (XAmzContentSHA256Mismatch).
		awsconfig.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		awsconfig.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 storage: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("s3 storage: no region configured, and none in the AWS configuration")
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		if cfg.HTTPClient != nil {
			// Set here, not in the loaded configuration, which would
			// try to add AWS_CA_BUNDLE to it.
			o.HTTPClient = cfg.HTTPClient
		}
	})
	s := &Storage{cfg: cfg, client: client, logger: logger}

	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	if _, err := client.HeadBucket(rctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		switch httpStatus(err) {
		case http.StatusNotFound:
			return nil, fmt.Errorf("s3 storage: bucket %q does not exist: %w", cfg.Bucket, err)
		case http.StatusForbidden, http.StatusUnauthorized:
			return nil, fmt.Errorf("s3 storage: access to bucket %q denied (are the credentials right?): %w", cfg.Bucket, err)
		default:
			return nil, fmt.Errorf("s3 storage: checking bucket %q: %w", cfg.Bucket, classify(err))
		}
	}
	return s, nil
}

// Bucket returns the bucket the storage uses.
func (s *Storage) Bucket() string { return s.cfg.Bucket }

// Client returns the S3 client the storage uses.
func (s *Storage) Client() *s3.Client { return s.client }

// Key returns the key an upload to dest is placed at: the configured
// prefix followed by dest.Path. dest.Root is not used.
func (s *Storage) Key(dest session.Destination) string { return s.cfg.Prefix + dest.Path }

// StagingKey returns the key of the staging object of session id: where a
// complete upload is put to be read back before it is placed.
func (s *Storage) StagingKey(id protocol.SessionID) string {
	return s.cfg.StatePrefix + "staging/" + id.Bare()
}

// requestContext returns the context of one request: ctx, ended after the
// configured request timeout.
func (s *Storage) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// CheckDestination implements [session.Storage]. A key under the state
// prefix is refused with ErrInvalidDestination, and so is one longer than
// S3 allows (ErrInvalidName); otherwise a HEAD request tells whether the
// destination exists.
func (s *Storage) CheckDestination(ctx context.Context, dest session.Destination, overwrite bool) error {
	key := s.Key(dest)
	if strings.HasPrefix(key, s.cfg.StatePrefix) {
		return fmt.Errorf("%w: %s is where the storage keeps its own objects", session.ErrInvalidDestination, key)
	}
	if len(key) > maxKeyLength {
		return fmt.Errorf("%w: a key of %d bytes (the limit is %d)", session.ErrInvalidName, len(key), maxKeyLength)
	}
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	_, err := s.client.HeadObject(rctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		if !overwrite {
			return session.ErrDestinationExists
		}
		return nil
	case httpStatus(err) == http.StatusNotFound:
		return nil
	default:
		return fmt.Errorf("checking destination %s: %w", key, classify(err))
	}
}

// Data implements [session.Storage].
func (s *Storage) Data(_ context.Context, ref session.DataRef) (session.Data, error) {
	d, err := s.openData(ref)
	if err != nil {
		return nil, err
	}
	s.open.Store(ref.ID, d)
	return d, nil
}

// Locate returns the bucket and key of the complete upload of session id,
// for a server application notified by reference (see [Located]): it
// puts the upload into its staging object first, unless it is there
// already. The caller holds the session's lease, as a notification does,
// and the session's Data is open (a notification opens it).
func (s *Storage) Locate(ctx context.Context, id protocol.SessionID) (bucket, key string, err error) {
	v, ok := s.open.Load(id)
	if !ok {
		return "", "", fmt.Errorf("session %s has no open data in this storage", id)
	}
	return v.(*data).Location(ctx)
}

// PresignGet returns a URL that reads the object at key without
// credentials until lifetime has passed, for a server application
// notified by reference.
func (s *Storage) PresignGet(ctx context.Context, key string, lifetime time.Duration) (string, error) {
	req, err := s3.NewPresignClient(s.client).PresignGetObject(ctx,
		&s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)},
		s3.WithPresignExpires(lifetime))
	if err != nil {
		return "", fmt.Errorf("presigning a request for %s: %w", key, err)
	}
	return req.URL, nil
}

// ProbeConditionalWrites proves that the store honours conditional
// writes, which placing an upload without overwriting relies on: a
// second PutObject of a probe key with If-None-Match: * must fail with
// 412, and so must one with If-Match and a wrong ETag, while one with the
// right ETag succeeds. The probe object, under the state prefix, is
// deleted afterwards.
func (s *Storage) ProbeConditionalWrites(ctx context.Context) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	key := s.cfg.StatePrefix + "probe/" + hex.EncodeToString(rnd[:])
	put := func(body string, mod func(*s3.PutObjectInput)) (*s3.PutObjectOutput, error) {
		rctx, cancel := s.requestContext(ctx)
		defer cancel()
		in := &s3.PutObjectInput{
			Bucket:        aws.String(s.cfg.Bucket),
			Key:           aws.String(key),
			Body:          strings.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))),
		}
		mod(in)
		return s.client.PutObject(rctx, in)
	}
	err := func() error {
		out, err := put("first", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
		if err != nil {
			return fmt.Errorf("writing probe object %s: %w", key, classify(err))
		}
		if _, err = put("second", func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); err == nil {
			return errors.New("the store replaced an existing object despite If-None-Match: *")
		} else if httpStatus(err) != http.StatusPreconditionFailed {
			return fmt.Errorf("writing probe object %s again with If-None-Match: *: want 412, got: %w", key, classify(err))
		}
		if _, err = put("third", func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"00000000000000000000000000000000"`) }); err == nil {
			return errors.New("the store replaced an object despite If-Match with a wrong ETag")
		} else if httpStatus(err) != http.StatusPreconditionFailed {
			return fmt.Errorf("writing probe object %s with a wrong If-Match: want 412, got: %w", key, classify(err))
		}
		if out.ETag == nil {
			return errors.New("the store returned no ETag for the probe object")
		}
		if _, err = put("fourth", func(in *s3.PutObjectInput) { in.IfMatch = out.ETag }); err != nil {
			return fmt.Errorf("writing probe object %s with the right If-Match: %w", key, classify(err))
		}
		return nil
	}()
	if derr := s.deleteObject(ctx, key); derr != nil {
		s.logger.Warn("deleting the conditional-write probe object", zap.String("key", key), zap.Error(derr))
	}
	if err != nil {
		return fmt.Errorf("s3 storage: bucket %q does not honour conditional writes: %w", s.cfg.Bucket, err)
	}
	return nil
}

// deleteObject deletes the object at key; a missing one is fine.
func (s *Storage) deleteObject(ctx context.Context, key string) error {
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	_, err := s.client.DeleteObject(rctx, &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil && httpStatus(err) != http.StatusNotFound {
		return fmt.Errorf("deleting %s: %w", key, classify(err))
	}
	return nil
}

// Interface guard
var _ session.Storage = (*Storage)(nil)
