package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// Shared objects: what the nodes of a farm that share sessions keep in
// the bucket, under the state prefix. The storage only reads and writes
// them; what they hold is its caller's.
//
//	<state prefix>key                the key the nodes' session ids and states are sealed with
//	<state prefix>sessions/<guid>    a session's shared state
//	<state prefix>replies/<guid>     the reply of a finished session

// ErrPreconditionFailed is returned by PutShared when the object changed
// (or appeared, or vanished) since the ETag the caller gave.
var ErrPreconditionFailed = errors.New("the shared object changed")

// ErrNoObject is returned for a shared object that does not exist.
var ErrNoObject = errors.New("no such shared object")

// sharedKeySize is the length of the farm's key.
const sharedKeySize = 32

// SharedKey returns the key the nodes sharing the bucket's sessions seal
// with, creating it (If-None-Match: *) when no node did yet.
func (s *Storage) SharedKey(ctx context.Context) ([]byte, error) {
	key := s.cfg.StatePrefix + "key"
	for range 3 {
		b, _, err := s.GetShared(ctx, key)
		if err == nil {
			if len(b) != sharedKeySize {
				return nil, fmt.Errorf("shared key %s has %d bytes, want %d", key, len(b), sharedKeySize)
			}
			return b, nil
		}
		if !errors.Is(err, ErrNoObject) {
			return nil, err
		}
		b = make([]byte, sharedKeySize)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("creating the shared key: %w", err)
		}
		_, err = s.PutShared(ctx, key, b, "", nil)
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, ErrPreconditionFailed) {
			return nil, err
		}
		// Another node created it first: read theirs.
	}
	return nil, fmt.Errorf("creating the shared key %s: it keeps changing", key)
}

// StateKey returns the key of the shared state of session id.
func (s *Storage) StateKey(id protocol.SessionID) string {
	return s.cfg.StatePrefix + "sessions/" + id.Bare()
}

// ReplyKey returns the key of the shared reply of session id.
func (s *Storage) ReplyKey(id protocol.SessionID) string {
	return s.cfg.StatePrefix + "replies/" + id.Bare()
}

// GetShared reads the object at key and returns its bytes and ETag, or
// ErrNoObject.
func (s *Storage) GetShared(ctx context.Context, key string) ([]byte, string, error) {
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	out, err := s.client.GetObject(rctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return nil, "", fmt.Errorf("%w: %s", ErrNoObject, key)
		}
		return nil, "", fmt.Errorf("reading %s: %w", key, classify(err))
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 64<<20))
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", key, classify(err))
	}
	return b, aws.ToString(out.ETag), nil
}

// HeadShared returns the ETag and metadata of the object at key, or
// ErrNoObject.
func (s *Storage) HeadShared(ctx context.Context, key string) (string, map[string]string, error) {
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	out, err := s.client.HeadObject(rctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return "", nil, fmt.Errorf("%w: %s", ErrNoObject, key)
		}
		return "", nil, fmt.Errorf("checking %s: %w", key, classify(err))
	}
	return aws.ToString(out.ETag), out.Metadata, nil
}

// Unconditional, as PutShared's ifMatch, writes whatever is there.
const Unconditional = "*"

// PutShared writes b at key with the given metadata, only if the object
// there has the ETag ifMatch, or, with ifMatch "", only if there is none
// (or always, with Unconditional); otherwise it fails with
// ErrPreconditionFailed. It returns the new ETag.
func (s *Storage) PutShared(ctx context.Context, key string, b []byte, ifMatch string, meta map[string]string) (string, error) {
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))),
		Metadata:      meta,
	}
	switch ifMatch {
	case "":
		in.IfNoneMatch = aws.String("*")
	case Unconditional:
	default:
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := s.client.PutObject(rctx, in)
	if err != nil {
		switch httpStatus(err) {
		case http.StatusPreconditionFailed, http.StatusConflict:
			return "", fmt.Errorf("%w: %s", ErrPreconditionFailed, key)
		case http.StatusNotFound:
			// If-Match of an object that is gone.
			return "", fmt.Errorf("%w: %s is gone", ErrPreconditionFailed, key)
		}
		return "", fmt.Errorf("writing %s: %w", key, classify(err))
	}
	return aws.ToString(out.ETag), nil
}

// PutSharedFrom writes the n bytes of r at key, unconditionally (a reply,
// written only by the session's owner).
func (s *Storage) PutSharedFrom(ctx context.Context, key string, r io.ReadSeeker, n int64) error {
	rctx, cancel := s.requestContext(ctx)
	defer cancel()
	_, err := s.client.PutObject(rctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		Body:          r,
		ContentLength: aws.Int64(n),
	})
	if err != nil {
		return fmt.Errorf("writing %s: %w", key, classify(err))
	}
	return nil
}

// OpenShared returns a reader of the object at key, or ErrNoObject.
func (s *Storage) OpenShared(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return nil, fmt.Errorf("%w: %s", ErrNoObject, key)
		}
		return nil, fmt.Errorf("reading %s: %w", key, classify(err))
	}
	return out.Body, nil
}

// DeleteShared deletes the object at key; a missing one is fine.
func (s *Storage) DeleteShared(ctx context.Context, key string) error {
	return s.deleteObject(ctx, key)
}

// Guard is called before every request that changes a session's bytes in
// the bucket (a part upload, placing the upload, aborting it). An error
// stops the request; an error wrapping session.ErrMoved says another node
// owns the session now: its multipart upload is that node's, so Remove
// then deletes only what this node holds locally.
type Guard func(ctx context.Context, id protocol.SessionID) error

// SetGuard installs the guard of every session's requests.
func (s *Storage) SetGuard(g Guard) { s.guard.Store(&g) }

// AfterRecord is called once the session's state durably records a
// change in the bucket (a multipart upload created, a part sent, a copy
// started), with the session's id; it publishes the new state of a
// shared session. An error fails the step as a failed request would.
type AfterRecord func(ctx context.Context, id protocol.SessionID) error

// SetAfterRecord installs the hook called after every durable record.
func (s *Storage) SetAfterRecord(f AfterRecord) { s.afterRecord.Store(&f) }

// checkGuard runs the guard, if any.
func (s *Storage) checkGuard(ctx context.Context, id protocol.SessionID) error {
	if g := s.guard.Load(); g != nil && *g != nil {
		return (*g)(ctx, id)
	}
	return nil
}

// runAfterRecord runs the after-record hook, if any.
func (s *Storage) runAfterRecord(ctx context.Context, id protocol.SessionID) error {
	if f := s.afterRecord.Load(); f != nil && *f != nil {
		return (*f)(ctx, id)
	}
	return nil
}

// Forget implements [session.Forgetter]: it deletes the session's local
// part files and leaves its multipart upload, now another node's, alone.
func (d *data) Forget() error {
	rec, held, psize := d.stop()
	errs := d.removeParts(max(int32(len(rec.Parts)), 1), held, psize)
	d.s.open.CompareAndDelete(d.id, d)
	return errors.Join(errs...)
}

// AbortOrphans aborts the multipart uploads that the record local (this
// node's, of a session another node took over) names and the record
// shared (the new owner's) does not: uploads this node started after the
// new owner's copy of the state was written, which nobody else knows.
// destKey is the key of the session's destination.
func (s *Storage) AbortOrphans(ctx context.Context, destKey string, local, shared json.RawMessage) error {
	var mine, theirs record
	if len(local) == 0 {
		return nil
	}
	if err := json.Unmarshal(local, &mine); err != nil {
		return fmt.Errorf("decoding a record: %w", err)
	}
	if len(shared) > 0 {
		if err := json.Unmarshal(shared, &theirs); err != nil {
			return fmt.Errorf("decoding a record: %w", err)
		}
	}
	var errs []error
	abort := func(key, uploadID string) {
		rctx, cancel := s.requestContext(ctx)
		defer cancel()
		_, err := s.client.AbortMultipartUpload(rctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
		})
		if err != nil && !isNoSuchUpload(err) && httpStatus(err) != http.StatusNotFound {
			errs = append(errs, fmt.Errorf("aborting %s: %w", key, classify(err)))
		}
	}
	if mine.UploadID != "" && mine.UploadID != theirs.UploadID {
		abort(mine.Key, mine.UploadID)
	}
	if mine.CopyID != "" && mine.CopyID != theirs.CopyID {
		abort(destKey, mine.CopyID)
	}
	return errors.Join(errs...)
}

// Interface guard
var _ session.Forgetter = (*data)(nil)
