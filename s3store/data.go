package s3store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// Located is implemented by the Data of a [Storage]: where a session's
// complete upload can be read in the bucket, for a server application
// notified by reference (with a URL from [Storage.PresignGet]).
type Located interface {
	// Location puts the complete upload into its staging object, unless
	// it is there already, and returns the object's bucket and key. It
	// fails for an upload that is not complete, or that was placed and
	// whose staging object is gone.
	Location(ctx context.Context) (bucket, key string, err error)
}

// record is what a session's Data records in the session's state (see
// session.Journal), so that a restart finds its bytes again.
type record struct {
	// Total is the upload's length and PartSize the size of its parts,
	// fixed when its first part is sent.
	Total    int64 `json:"total"`
	PartSize int64 `json:"part_size"`
	// Key and UploadID name the multipart upload that the parts went to.
	Key      string `json:"key,omitempty"`
	UploadID string `json:"upload_id,omitempty"`
	// Parts are the parts in the bucket, from the first on.
	Parts []part `json:"parts,omitempty"`
	// Staged says the complete upload is in its staging object.
	Staged bool `json:"staged,omitempty"`
	// CopyID names the multipart upload that copies the staging object
	// to the destination, while it runs.
	CopyID string `json:"copy_id,omitempty"`
	// Done says the staging object was placed at the destination and
	// deleted.
	Done bool `json:"done,omitempty"`
	// Base is the number of leading bytes of an unfinished upload that
	// its staging object holds, to be read back (see consolidate).
	Base int64 `json:"base,omitempty"`
}

// part is one part of a multipart upload.
type part struct {
	N    int32  `json:"n"`
	ETag string `json:"etag"`
	Size int64  `json:"size"`
}

// data holds the bytes of one session: the parts in the bucket, which its
// record lists, then the rest of the bytes in local files, one per part,
// <tail>/<guid>.<part>.
type data struct {
	s    *Storage
	id   protocol.SessionID
	j    session.Journal
	dest string // the destination's key
	// readBack sends the parts to the staging key instead of the
	// destination's, so that the complete upload can be read back
	// before it is placed.
	readBack bool

	// mu guards the fields below: the part upload running in the
	// background changes them, and Size and Sync read them while Append
	// runs.
	mu    sync.Mutex
	rec   record // the last record given to the journal, but see Truncate
	total int64  // the upload's length, or -1
	psize int64  // the part size, 0 until fixed
	local int64  // bytes in local files, after those of rec.Parts
	// skip is the number of bytes past Size that the bucket holds
	// already: after Truncate into bytes in the bucket, Append reads
	// them again without storing them.
	skip    int64
	newFile bool  // a local file was created since the last Sync
	last    *part // the last part, sent by Place but not recorded
	placed  bool  // Place completed the multipart upload

	// up is the part upload running in the background, if any. It is
	// used only under the session's request lock.
	up *upload

	syncMu sync.Mutex // one Sync at a time
}

// upload is a part being uploaded in the background.
type upload struct {
	part   int32
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// stateJournal is the session.Journal of a session of the session
// package, whose state tells what DataRef does not (yet): the upload's
// length, once a fragment announced it, and whether the session computes
// its digest (it then notifies a server application, which may read the
// upload back before it is placed).
type stateJournal interface {
	State() session.State
}

// openData returns the Data ref names, finding its bytes: the record's
// parts, and the local files that follow them.
func (s *Storage) openData(ref session.DataRef) (*data, error) {
	d := &data{s: s, id: ref.ID, j: ref.Journal, dest: s.Key(ref.Dest), total: ref.Total}
	if len(ref.Record) > 0 {
		if err := json.Unmarshal(ref.Record, &d.rec); err != nil {
			return nil, fmt.Errorf("decoding the record of session %s: %w", ref.ID, err)
		}
		if d.total < 0 {
			d.total = d.rec.Total
		}
		d.psize = d.rec.PartSize
	}
	if d.rec.Key != "" {
		d.readBack = d.rec.Key == s.StagingKey(ref.ID)
	} else {
		d.readBack = ref.ReadBack
	}
	if d.rec.Staged {
		return d, nil
	}
	// A crash may have come between recording the last part and
	// deleting its file.
	if n := int32(len(d.rec.Parts)); n > 0 {
		if err := os.Remove(d.partPath(n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("deleting a sent part of session %s: %w", ref.ID, err)
		}
	}
	var sizes []int64
	for p := int32(len(d.rec.Parts)) + 1; ; p++ {
		fi, err := os.Lstat(d.partPath(p))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the local part %d of session %s: %w", p, ref.ID, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("local part %d of session %s is not a regular file", p, ref.ID)
		}
		sizes = append(sizes, fi.Size())
	}
	if len(sizes) == 0 {
		return d, nil
	}
	if d.psize == 0 {
		// No part was sent yet: the part size is the one the local
		// files were cut with, even if the configuration changed.
		if d.total < 0 {
			d.fetchTotal()
		}
		if len(sizes) > 1 {
			d.psize = sizes[0]
		} else {
			d.psize = max(s.partSizeFor(d.total), roundUpMiB(sizes[0]))
		}
	}
	for i, n := range sizes {
		if n > d.psize || (n < d.psize && i < len(sizes)-1) {
			// Files past a short one were never acknowledged.
			s.logger.Warn("dropping inconsistent local parts", zap.String("session_id", ref.ID.Wire()),
				zap.Int("from_part", len(d.rec.Parts)+i+2))
			for j := i + 1; j < len(sizes); j++ {
				_ = os.Remove(d.partPath(int32(len(d.rec.Parts) + j + 1)))
			}
			if n > d.psize {
				return nil, fmt.Errorf("local part %d of session %s holds %d bytes, more than a part", len(d.rec.Parts)+i+1, ref.ID, n)
			}
			sizes = sizes[:i+1]
			break
		}
	}
	for _, n := range sizes {
		d.local += n
	}
	return d, nil
}

// partSizeFor returns the part size of an upload of total bytes: the
// configured part size, or more for an upload that would need more than
// 10,000 parts.
func (s *Storage) partSizeFor(total int64) int64 {
	return max(s.cfg.PartSize, roundUpMiB((total+maxParts-1)/maxParts))
}

// roundUpMiB rounds n up to a whole number of MiB.
func roundUpMiB(n int64) int64 { return (n + 1<<20 - 1) &^ (1<<20 - 1) }

// partPath returns the path of the local file of part p.
func (d *data) partPath(p int32) string {
	return filepath.Join(d.s.cfg.TailDir, d.id.Bare()+"."+strconv.Itoa(int(p)))
}

// fetchTotal learns the upload's length from the session's state, for a
// Data opened before a fragment announced it.
func (d *data) fetchTotal() {
	if sj, ok := d.j.(stateJournal); ok {
		if t := sj.State().Total; t >= 0 {
			d.mu.Lock()
			d.total = t
			d.mu.Unlock()
		}
	}
}

// fixPartSize fixes the part size, once the upload's length is known.
// The caller holds the request lock and not mu.
func (d *data) fixPartSize() error {
	if d.psize > 0 && d.total >= 0 {
		return nil
	}
	if d.total < 0 {
		d.fetchTotal()
		if d.total < 0 {
			return fmt.Errorf("the length of the upload of session %s is not known", d.id)
		}
	}
	if d.psize == 0 {
		d.mu.Lock()
		d.psize = d.s.partSizeFor(d.total)
		d.mu.Unlock()
	}
	return nil
}

// numParts returns the number of parts of the upload: 0 for an empty one.
func (d *data) numParts() int32 {
	return int32((d.total + d.psize - 1) / d.psize)
}

// partLen returns the length of part p.
func (d *data) partLen(p int32) int64 {
	return min(d.psize, d.total-int64(p-1)*d.psize)
}

// sentLocked returns the number of bytes in the recorded parts. The caller
// holds mu.
func (d *data) sentLocked() int64 {
	var n int64
	for _, p := range d.rec.Parts {
		n += p.Size
	}
	return n
}

// heldLocked returns the number of bytes held, in the bucket or local
// files, including those skipped. The caller holds mu.
func (d *data) heldLocked() int64 {
	if d.rec.Staged {
		return d.total
	}
	return d.sentLocked() + d.local
}

// Size implements [session.Data].
func (d *data) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.heldLocked() - d.skip
}

// firstLocal returns the number of the first part that is not in the
// bucket.
func (d *data) firstLocal() int32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int32(len(d.rec.Parts)) + 1
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Append implements [session.Data]. Bytes go into the local file of their
// part; when a part other than the last is complete, it is uploaded in
// the background while the next one fills. Before the first byte of a
// part is written, every part but the one before it must be in the
// bucket, so the local files never hold more than two parts. A fragment
// that completes no part sends no request. A part that fails to upload
// stays in its local file: the bytes appended so far are returned with
// the error, and the upload is tried again by the next Append or Place.
func (d *data) Append(r io.Reader, n int64) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	if err := d.fixPartSize(); err != nil {
		return 0, err
	}
	var written int64
	d.mu.Lock()
	skip := min(d.skip, n)
	staged := d.rec.Staged
	d.mu.Unlock()
	if skip > 0 {
		// Bytes the bucket holds already: read them, store nothing.
		k, err := io.CopyN(io.Discard, r, skip)
		d.mu.Lock()
		d.skip -= k
		d.mu.Unlock()
		written += k
		if err != nil {
			return written, fmt.Errorf("%w: %d of %d bytes: %v", session.ErrBodyIncomplete, written, n, err)
		}
	}
	if written < n && staged {
		return written, fmt.Errorf("appending to the complete upload of session %s", d.id)
	}
	for written < n {
		d.mu.Lock()
		off := d.heldLocked()
		d.mu.Unlock()
		if off >= d.total {
			return written, fmt.Errorf("appending past the end of the upload of session %s", d.id)
		}
		p := int32(off/d.psize) + 1
		start := int64(p-1) * d.psize
		if off == start && p > 1 {
			if err := d.beforePart(p); err != nil {
				return written, err
			}
		}
		k, err := d.writeLocal(p, off-start, r, min(start+d.psize-off, n-written))
		written += k
		if err != nil {
			return written, err
		}
	}
	d.startNext()
	return written, nil
}

// writeLocal copies n bytes of r into the local file of part p, at offset
// at, counting them held as they are written. A failed write is cut off
// again. A reader that ends early is reported with ErrBodyIncomplete.
func (d *data) writeLocal(p int32, at int64, r io.Reader, n int64) (int64, error) {
	f, err := os.OpenFile(d.partPath(p), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("opening local part: %w", err)
	}
	defer f.Close()
	if at == 0 {
		d.mu.Lock()
		d.newFile = true
		d.mu.Unlock()
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var written int64
	for written < n {
		k, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), n-written)])
		if k > 0 {
			if _, err := f.WriteAt(buf[:k], at+written); err != nil {
				_ = f.Truncate(at + written)
				return written, fmt.Errorf("writing local part: %w", err)
			}
			written += int64(k)
			d.mu.Lock()
			d.local += int64(k)
			d.mu.Unlock()
		}
		if rerr != nil {
			if written < n {
				return written, fmt.Errorf("%w: %d of %d bytes: %v", session.ErrBodyIncomplete, written, n, rerr)
			}
			break
		}
	}
	return written, nil
}

// beforePart makes room for part p, whose first byte is about to be
// written: every part before p-1 is sent (waiting for the upload in
// flight, or uploading here), and part p-1 starts uploading in the
// background.
func (d *data) beforePart(p int32) error {
	for {
		first := d.firstLocal()
		if first >= p-1 {
			if first == p-1 && d.up == nil {
				d.start(first)
			}
			return nil
		}
		if u := d.up; u != nil {
			<-u.done
			d.up = nil
			if u.err != nil {
				return u.err
			}
			continue
		}
		if err := d.uploadPart(context.Background(), first); err != nil {
			return err
		}
	}
}

// startNext starts uploading the first local part, if it is complete and
// not the upload's last, and no upload is in flight. An upload that
// finished with an error is forgotten: its part is still local, and is
// tried again.
func (d *data) startNext() {
	if u := d.up; u != nil {
		select {
		case <-u.done:
			d.up = nil
			if u.err != nil {
				d.s.logger.Debug("uploading a part in the background", zap.String("session_id", d.id.Wire()), zap.Error(u.err))
			}
		default:
			return
		}
	}
	first := d.firstLocal()
	d.mu.Lock()
	complete := int64(first)*d.psize <= d.heldLocked()
	d.mu.Unlock()
	if first < d.numParts() && complete {
		d.start(first)
	}
}

// start uploads part p in the background (or here, with syncUploads).
func (d *data) start(p int32) {
	ctx, cancel := context.WithCancel(context.Background())
	u := &upload{part: p, cancel: cancel, done: make(chan struct{})}
	d.up = u
	run := func() {
		defer close(u.done)
		defer cancel()
		u.err = d.uploadPart(ctx, p)
	}
	if d.s.syncUploads {
		run()
	} else {
		go run()
	}
}

// wait waits for the part upload in flight, if any, and returns its error.
func (d *data) wait() error {
	u := d.up
	if u == nil {
		return nil
	}
	<-u.done
	d.up = nil
	return u.err
}

// uploadPart uploads part p, a complete part other than the last, from its
// local file, records the parts in the bucket durably, and then deletes
// the file. It runs in the background, or under the request lock with
// nothing in flight.
func (d *data) uploadPart(ctx context.Context, p int32) error {
	if err := d.ensureMultipart(ctx); err != nil {
		return err
	}
	size := d.partLen(p)
	d.mu.Lock()
	key, uploadID := d.rec.Key, d.rec.UploadID
	d.mu.Unlock()
	if err := d.s.checkGuard(ctx, d.id); err != nil {
		return err
	}
	etag, err := d.sendPart(ctx, key, uploadID, p, size)
	if err != nil {
		return err
	}
	d.mu.Lock()
	rec := d.rec
	rec.Parts = append(slices.Clone(d.rec.Parts), part{N: p, ETag: etag, Size: size})
	d.mu.Unlock()
	if err := d.record(rec, true); err != nil {
		return err
	}
	d.mu.Lock()
	d.rec = rec
	d.local -= size
	d.mu.Unlock()
	if err := os.Remove(d.partPath(p)); err != nil {
		d.s.logger.Warn("deleting a sent part", zap.String("session_id", d.id.Wire()), zap.Int32("part", p), zap.Error(err))
	}
	return nil
}

// record gives rec to the session's journal.
func (d *data) record(rec record, durable bool) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := d.j.Record(b, durable); err != nil {
		return fmt.Errorf("recording the parts of session %s: %w", d.id, err)
	}
	if durable {
		return d.s.runAfterRecord(context.Background(), d.id)
	}
	return nil
}

// ensureMultipart creates the session's multipart upload, unless it
// exists, and records it durably, so that Remove finds it after a crash.
func (d *data) ensureMultipart(ctx context.Context) error {
	d.mu.Lock()
	if d.rec.UploadID != "" {
		d.mu.Unlock()
		return nil
	}
	key := d.dest
	if d.readBack {
		key = d.s.StagingKey(d.id)
	}
	d.mu.Unlock()
	// Not cut short by Remove cancelling ctx: the store may create the
	// upload after all, and one whose id never arrived is found by no
	// one but a lifecycle rule. Remove waits for it and aborts it.
	rctx, cancel := d.s.requestContext(context.WithoutCancel(ctx))
	defer cancel()
	out, err := d.s.client.CreateMultipartUpload(rctx, &s3.CreateMultipartUploadInput{
		Bucket:   aws.String(d.s.cfg.Bucket),
		Key:      aws.String(key),
		Metadata: map[string]string{sessionMeta: d.id.Bare()},
	})
	if err != nil {
		return fmt.Errorf("starting the multipart upload of session %s: %w", d.id, classify(err))
	}
	d.mu.Lock()
	rec := d.rec
	rec.Total, rec.PartSize = d.total, d.psize
	rec.Key, rec.UploadID = key, aws.ToString(out.UploadId)
	d.mu.Unlock()
	if err := d.record(rec, true); err != nil {
		d.abortQuietly(key, rec.UploadID)
		return err
	}
	d.mu.Lock()
	d.rec = rec
	d.mu.Unlock()
	return nil
}

// sendPart uploads part p of the multipart upload from its local file and
// returns its ETag.
func (d *data) sendPart(ctx context.Context, key, uploadID string, p int32, size int64) (string, error) {
	f, err := os.Open(d.partPath(p))
	if err != nil {
		return "", fmt.Errorf("opening local part: %w", err)
	}
	defer f.Close()
	rctx, cancel := d.s.requestContext(ctx)
	defer cancel()
	out, err := d.s.client.UploadPart(rctx, &s3.UploadPartInput{
		Bucket:        aws.String(d.s.cfg.Bucket),
		Key:           aws.String(key),
		UploadId:      aws.String(uploadID),
		PartNumber:    aws.Int32(p),
		Body:          io.NewSectionReader(f, 0, size),
		ContentLength: aws.Int64(size),
	})
	if err != nil {
		if httpStatus(err) == 0 && d.uploadGone(ctx, key, uploadID) {
			// Some stores refuse a part of a multipart upload they do not
			// have before reading it, and close the connection while it
			// is still being sent, so the refusal itself is lost.
			return "", fmt.Errorf("uploading part %d of session %s: %w: the multipart upload is gone (%v)", p, d.id, session.ErrDataLost, err)
		}
		return "", fmt.Errorf("uploading part %d of session %s: %w", p, d.id, classify(err))
	}
	return aws.ToString(out.ETag), nil
}

// uploadGone reports whether the store says that the multipart upload
// uploadID does not exist. Only its existence is asked for: the parts are
// what the record lists.
func (d *data) uploadGone(ctx context.Context, key, uploadID string) bool {
	rctx, cancel := d.s.requestContext(ctx)
	defer cancel()
	_, err := d.s.client.ListParts(rctx, &s3.ListPartsInput{
		Bucket:   aws.String(d.s.cfg.Bucket),
		Key:      aws.String(key),
		UploadId: aws.String(uploadID),
		MaxParts: aws.Int32(1),
	})
	return isNoSuchUpload(err)
}

// sendAll sends every part that is still local, the last one included,
// and returns the list of all parts. The last part is not recorded, and
// its file stays until Remove.
func (d *data) sendAll(ctx context.Context) ([]types.CompletedPart, error) {
	n := d.numParts()
	for p := d.firstLocal(); p < n; p = d.firstLocal() {
		if err := d.uploadPart(ctx, p); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	parts := slices.Clone(d.rec.Parts)
	last, key, uploadID := d.last, d.rec.Key, d.rec.UploadID
	d.mu.Unlock()
	if int32(len(parts)) < n {
		if last == nil || last.N != n {
			size := d.partLen(n)
			etag, err := d.sendPart(ctx, key, uploadID, n, size)
			if err != nil {
				return nil, err
			}
			last = &part{N: n, ETag: etag, Size: size}
			d.mu.Lock()
			d.last = last
			d.mu.Unlock()
		}
		parts = append(parts, *last)
	}
	out := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		out[i] = types.CompletedPart{PartNumber: aws.Int32(p.N), ETag: aws.String(p.ETag)}
	}
	return out, nil
}

// Sync implements [session.Data]: it fsyncs the local files, and the tail
// directory when a file was created in it.
func (d *data) Sync() error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	d.mu.Lock()
	first, end, psize, newFile := int32(len(d.rec.Parts))+1, d.heldLocked(), d.psize, d.newFile
	d.newFile = false
	staged := d.rec.Staged
	d.mu.Unlock()
	if staged || psize == 0 {
		return nil
	}
	for p := first; int64(p-1)*psize < end; p++ {
		f, err := os.OpenFile(d.partPath(p), os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue // sent meanwhile
		}
		if err != nil {
			return fmt.Errorf("opening local part: %w", err)
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("syncing local part: %w", err)
		}
	}
	if newFile {
		if err := syncDir(d.s.cfg.TailDir); err != nil {
			d.mu.Lock()
			d.newFile = true
			d.mu.Unlock()
			return err
		}
	}
	return nil
}

// syncDir fsyncs a directory.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening tail directory: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing tail directory: %w", err)
	}
	return nil
}

// Truncate implements [session.Data]. Local bytes past n are deleted.
// Bytes in the bucket cannot be cut off a part, and need not be: they
// were sent before the crash that Truncate recovers from, and are the
// client's own. So the parts that begin at or past n are dropped (they
// are sent again), and of the part that holds n, the bytes past n are
// kept: Size reports n, and Append reads them again without storing them
// (see skip).
func (d *data) Truncate(n int64) error {
	_ = d.wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	held := d.heldLocked()
	if n >= held-d.skip {
		return nil
	}
	d.last = nil
	sent := d.sentLocked()
	if d.rec.Staged || n < sent {
		if !d.rec.Staged {
			for p := int32(len(d.rec.Parts)) + 1; int64(p-1)*d.psize < held; p++ {
				if err := removeFile(d.partPath(p)); err != nil {
					return fmt.Errorf("truncating local parts: %w", err)
				}
			}
			d.local = 0
			keep := int((n + d.psize - 1) / d.psize)
			d.rec.Parts = d.rec.Parts[:keep]
			held = d.sentLocked()
		}
		d.skip = held - n
		return nil
	}
	d.skip = 0
	p := int32(n/d.psize) + 1
	if at := n - int64(p-1)*d.psize; at > 0 {
		if err := os.Truncate(d.partPath(p), at); err != nil {
			return fmt.Errorf("truncating local part: %w", err)
		}
		p++
	}
	for ; int64(p-1)*d.psize < held; p++ {
		if err := removeFile(d.partPath(p)); err != nil {
			return fmt.Errorf("truncating local parts: %w", err)
		}
	}
	d.local = n - sent
	return nil
}

// removeFile deletes a file that may not exist.
func removeFile(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Place implements [session.Data]. An upload of one part or none is one
// PutObject from its local file; a larger one sends its remaining parts
// and completes its multipart upload at the destination. An upload in its
// staging object (it was read back) is copied to the destination, part
// by part, into a new multipart upload, and the staging object deleted.
// Without overwrite, the request that makes the object appear carries
// If-None-Match: *, so the store decides atomically that the destination
// is free. An upload already in place is recognised by its metadata.
func (d *data) Place(ctx context.Context, dest session.Destination, overwrite bool) error {
	_ = d.wait()
	if err := d.fixPartSize(); err != nil {
		return err
	}
	key := d.s.Key(dest)
	if d.Size() != d.total {
		return fmt.Errorf("%w: placing %d of %d bytes", session.ErrIncomplete, d.Size(), d.total)
	}
	d.mu.Lock()
	rec := d.rec
	d.mu.Unlock()
	if !d.placed {
		if err := d.s.checkGuard(ctx, d.id); err != nil {
			return err
		}
	}
	switch {
	case rec.Done:
		if d.placedAt(ctx, key) {
			return nil
		}
		return fmt.Errorf("%w: the upload of session %s was placed and is no longer at %s", session.ErrDataLost, d.id, key)
	case rec.Staged:
		return d.copyStaged(ctx, key, overwrite)
	case rec.UploadID == "":
		return d.putWhole(ctx, key, overwrite)
	case rec.Key != key:
		if err := d.stage(ctx); err != nil {
			return err
		}
		return d.copyStaged(ctx, key, overwrite)
	}
	if d.placed {
		return nil
	}
	parts, err := d.sendAll(ctx)
	if err != nil {
		if isNoSuchUpload(err) && d.placedAt(ctx, key) {
			// Completed before a crash that came before Remove.
			return nil
		}
		return err
	}
	if err := d.complete(ctx, key, rec.UploadID, parts, overwrite); err != nil {
		return err
	}
	d.mu.Lock()
	d.placed = true
	d.mu.Unlock()
	return nil
}

// complete completes a multipart upload at key, the destination, and
// tells whether it is in place.
func (d *data) complete(ctx context.Context, key, uploadID string, parts []types.CompletedPart, overwrite bool) error {
	rctx, cancel := d.s.requestContext(ctx)
	defer cancel()
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(d.s.cfg.Bucket),
		Key:             aws.String(key),
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if !overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := d.s.client.CompleteMultipartUpload(rctx, in)
	return d.placeResult(ctx, key, overwrite, err)
}

// placeResult interprets the answer to the request that makes an upload
// appear at key: a destination that exists (412) is ErrDestinationExists,
// and a multipart upload that is gone is ErrDataLost, unless the object
// at key is this very upload, placed before.
//
// A store may refuse a conditional PutObject before it has read the body,
// and close the connection while it is still being sent: the client then
// sees no answer at all. So when a request without overwrite got none, a
// destination that exists is ErrDestinationExists all the same.
func (d *data) placeResult(ctx context.Context, key string, overwrite bool, err error) error {
	if err == nil {
		return nil
	}
	status := httpStatus(err)
	if (status == http.StatusPreconditionFailed || isNoSuchUpload(err) || (status == 0 && !overwrite)) && d.placedAt(ctx, key) {
		return nil
	}
	if status == http.StatusPreconditionFailed || (status == 0 && !overwrite && d.exists(ctx, key)) {
		return session.ErrDestinationExists
	}
	return fmt.Errorf("placing the upload of session %s at %s: %w", d.id, key, classify(err))
}

// putWhole writes the upload, of one part or none, from its local file to
// key in one request. Without overwrite, an existing object is left
// alone.
func (d *data) putWhole(ctx context.Context, key string, overwrite bool) error {
	var body io.ReadSeeker = strings.NewReader("")
	if d.total > 0 {
		f, err := os.Open(d.partPath(1))
		if err != nil {
			return fmt.Errorf("opening local part: %w", err)
		}
		defer f.Close()
		body = io.NewSectionReader(f, 0, d.total)
	}
	rctx, cancel := d.s.requestContext(ctx)
	defer cancel()
	in := &s3.PutObjectInput{
		Bucket:        aws.String(d.s.cfg.Bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(d.total),
		Metadata:      map[string]string{sessionMeta: d.id.Bare()},
	}
	if !overwrite {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := d.s.client.PutObject(rctx, in)
	return d.placeResult(ctx, key, overwrite, err)
}

// stage puts the complete upload into its staging object, unless it is
// there already, records that durably, and deletes the local files.
func (d *data) stage(ctx context.Context) error {
	_ = d.wait()
	if err := d.fixPartSize(); err != nil {
		return err
	}
	if d.Size() != d.total {
		return fmt.Errorf("%w: staging %d of %d bytes", session.ErrIncomplete, d.Size(), d.total)
	}
	d.mu.Lock()
	rec := d.rec
	d.mu.Unlock()
	if rec.Staged {
		if rec.Done {
			return fmt.Errorf("the upload of session %s was placed, and its staging object deleted", d.id)
		}
		return nil
	}
	staging := d.s.StagingKey(d.id)
	switch {
	case rec.UploadID == "":
		if err := d.putWhole(ctx, staging, true); err != nil {
			return err
		}
	case rec.Key == staging:
		parts, err := d.sendAll(ctx)
		if err == nil {
			err = d.complete(ctx, staging, rec.UploadID, parts, true)
		} else if isNoSuchUpload(err) && d.placedAt(ctx, staging) {
			// Completed before a crash that came before the record.
			err = nil
		}
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("the upload of session %s went to its destination's multipart upload, and cannot be read back before it is placed", d.id)
	}
	first := int32(len(rec.Parts)) + 1
	rec.Total, rec.PartSize = d.total, d.psize
	rec.Staged, rec.UploadID, rec.Parts, rec.Base = true, "", nil, 0
	if err := d.record(rec, true); err != nil {
		return err
	}
	d.mu.Lock()
	d.rec, d.local, d.last = rec, 0, nil
	d.mu.Unlock()
	for p := first; p <= max(d.numParts(), 1); p++ {
		if err := removeFile(d.partPath(p)); err != nil {
			d.s.logger.Warn("deleting a staged part", zap.String("session_id", d.id.Wire()), zap.Error(err))
		}
	}
	return nil
}

// copyStaged copies the staging object to key, the destination, into a
// new multipart upload of the same parts (a plain copy cannot be made
// conditional on the destination), and deletes the staging object.
func (d *data) copyStaged(ctx context.Context, key string, overwrite bool) error {
	if d.total == 0 {
		if err := d.putWhole(ctx, key, overwrite); err != nil {
			return err
		}
		return d.copied(ctx)
	}
	var err error
	for range 2 {
		if err = d.copyOnce(ctx, key, overwrite); !isNoSuchUpload(err) {
			break
		}
		// The copy's multipart upload expired: start it again.
		d.mu.Lock()
		rec := d.rec
		d.mu.Unlock()
		rec.CopyID = ""
		if rerr := d.record(rec, false); rerr != nil {
			return rerr
		}
		d.mu.Lock()
		d.rec = rec
		d.mu.Unlock()
	}
	if err != nil {
		return err
	}
	return d.copied(ctx)
}

// copyOnce is one attempt of copyStaged, without deleting the staging
// object.
func (d *data) copyOnce(ctx context.Context, key string, overwrite bool) error {
	d.mu.Lock()
	rec := d.rec
	d.mu.Unlock()
	bucket := d.s.cfg.Bucket
	if rec.CopyID == "" {
		rctx, cancel := d.s.requestContext(ctx)
		out, err := d.s.client.CreateMultipartUpload(rctx, &s3.CreateMultipartUploadInput{
			Bucket:   aws.String(bucket),
			Key:      aws.String(key),
			Metadata: map[string]string{sessionMeta: d.id.Bare()},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("starting the copy of session %s to %s: %w", d.id, key, classify(err))
		}
		rec.CopyID = aws.ToString(out.UploadId)
		if err := d.record(rec, true); err != nil {
			d.abortQuietly(key, rec.CopyID)
			return err
		}
		d.mu.Lock()
		d.rec = rec
		d.mu.Unlock()
	}
	parts, err := d.copyParts(ctx, key, rec.CopyID, int(d.numParts()))
	if err != nil {
		if isNoSuchUpload(err) && d.placedAt(ctx, key) {
			return nil
		}
		return err
	}
	err = d.complete(ctx, key, rec.CopyID, parts, overwrite)
	if errors.Is(err, session.ErrDestinationExists) {
		// Nothing of the copy is wanted any more.
		d.abortQuietly(key, rec.CopyID)
		rec.CopyID = ""
		if rerr := d.record(rec, false); rerr == nil {
			d.mu.Lock()
			d.rec = rec
			d.mu.Unlock()
		}
	}
	return err
}

// copied deletes the staging object of an upload that is in place, and
// records that.
func (d *data) copied(ctx context.Context) error {
	if err := d.s.deleteObject(ctx, d.s.StagingKey(d.id)); err != nil {
		// Placed all the same; Remove tries again.
		d.s.logger.Warn("deleting a staging object", zap.String("session_id", d.id.Wire()), zap.Error(err))
		return nil
	}
	d.mu.Lock()
	rec := d.rec
	d.mu.Unlock()
	rec.CopyID, rec.Done = "", true
	if err := d.record(rec, false); err != nil {
		return err
	}
	d.mu.Lock()
	d.rec = rec
	d.mu.Unlock()
	return nil
}

// Placed implements [session.Data]: the object at dest carries this
// session's id in its metadata. A store that cannot be asked counts as
// not placed.
func (d *data) Placed(dest session.Destination) bool {
	return d.placedAt(context.Background(), d.s.Key(dest))
}

// placedAt reports whether the object at key is this session's upload.
func (d *data) placedAt(ctx context.Context, key string) bool {
	rctx, cancel := d.s.requestContext(ctx)
	defer cancel()
	out, err := d.s.client.HeadObject(rctx, &s3.HeadObjectInput{Bucket: aws.String(d.s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		if httpStatus(err) != http.StatusNotFound {
			d.s.logger.Warn("checking a placed upload", zap.String("session_id", d.id.Wire()), zap.String("key", key), zap.Error(err))
		}
		return false
	}
	return out.Metadata[sessionMeta] == d.id.Bare()
}

// exists reports whether an object is at key.
func (d *data) exists(ctx context.Context, key string) bool {
	rctx, cancel := d.s.requestContext(ctx)
	defer cancel()
	_, err := d.s.client.HeadObject(rctx, &s3.HeadObjectInput{Bucket: aws.String(d.s.cfg.Bucket), Key: aws.String(key)})
	return err == nil
}

// NewReader implements [session.DataReader]. A complete upload is put
// into its staging object first (see Located) and read from there. Of an
// upload that is not complete (the session catches its digest up after a
// crash), the bytes in the bucket are read from the staging object too,
// after consolidate put them there, and the rest from the local files. An
// upload whose parts went to its destination's multipart upload cannot be
// read from an offset in the bucket: that fails with ErrDataLost, and its
// client starts over.
func (d *data) NewReader(off int64) (io.ReadCloser, error) {
	_ = d.wait()
	d.mu.Lock()
	complete := d.total >= 0 && d.heldLocked() == d.total && d.skip == 0
	sent, skip, base := d.sentLocked(), d.skip, d.rec.Base
	d.mu.Unlock()
	if complete {
		if err := d.stage(context.Background()); err != nil {
			return nil, err
		}
		return d.readStaged(off, d.total)
	}
	if skip > 0 {
		return nil, fmt.Errorf("%w: session %s is rewound into bytes it sent to the bucket, which cannot be read back", session.ErrDataLost, d.id)
	}
	if off >= sent {
		return d.readLocal(off)
	}
	if base != sent {
		if err := d.consolidate(context.Background()); err != nil {
			return nil, err
		}
	}
	head, err := d.readStaged(off, sent)
	if err != nil {
		return nil, err
	}
	tail, err := d.readLocal(sent)
	if err != nil {
		_ = head.Close()
		return nil, err
	}
	return &multiFile{Reader: io.MultiReader(head, tail), close: func() { _ = head.Close(); _ = tail.Close() }}, nil
}

// readLocal reads the bytes in local files from off, at least the bytes
// sent, to the end.
func (d *data) readLocal(off int64) (io.ReadCloser, error) {
	d.mu.Lock()
	held := d.heldLocked()
	d.mu.Unlock()
	var rs []io.Reader
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	for p := int32(off/d.psize) + 1; int64(p-1)*d.psize < held; p++ {
		f, err := os.Open(d.partPath(p))
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("opening local part: %w", err)
		}
		files = append(files, f)
		start := int64(p-1) * d.psize
		from := max(off, start) - start
		rs = append(rs, io.NewSectionReader(f, from, min(held, start+d.psize)-start-from))
	}
	return &multiFile{Reader: io.MultiReader(rs...), close: closeAll}, nil
}

// multiFile reads one reader after the other and closes them all.
type multiFile struct {
	io.Reader
	close func()
}

func (m *multiFile) Close() error { m.close(); return nil }

// consolidate makes the bytes an unfinished upload sent to the bucket
// readable: a multipart upload in progress cannot be read, so it is
// completed into the staging object, and a new one is started at the
// same key with the same parts, copied from that object on the store's
// side. The staging object then holds the first bytes of the upload
// (record.Base), and the next parts go to the new multipart upload, which
// replaces the staging object once it is complete. Only an upload whose
// parts go to its staging key can be consolidated.
func (d *data) consolidate(ctx context.Context) error {
	d.mu.Lock()
	rec, sent := d.rec, d.sentLocked()
	d.mu.Unlock()
	staging := d.s.StagingKey(d.id)
	if rec.Key != staging {
		return fmt.Errorf("%w: bytes of session %s are in its destination's multipart upload, which cannot be read back before it is placed", session.ErrDataLost, d.id)
	}
	parts := make([]types.CompletedPart, len(rec.Parts))
	for i, p := range rec.Parts {
		parts[i] = types.CompletedPart{PartNumber: aws.Int32(p.N), ETag: aws.String(p.ETag)}
	}
	if err := d.complete(ctx, staging, rec.UploadID, parts, true); err != nil {
		return err
	}
	// A multipart upload that was gone counts as completed when the
	// staging object is this session's; it must also be this size.
	rctx, cancel := d.s.requestContext(ctx)
	head, err := d.s.client.HeadObject(rctx, &s3.HeadObjectInput{Bucket: aws.String(d.s.cfg.Bucket), Key: aws.String(staging)})
	cancel()
	if err != nil {
		return fmt.Errorf("reading the staging object of session %s: %w", d.id, classify(err))
	}
	if aws.ToInt64(head.ContentLength) != sent {
		return fmt.Errorf("%w: the staging object of session %s holds %d bytes, not the %d sent", session.ErrDataLost, d.id, aws.ToInt64(head.ContentLength), sent)
	}
	rctx, cancel = d.s.requestContext(ctx)
	out, err := d.s.client.CreateMultipartUpload(rctx, &s3.CreateMultipartUploadInput{
		Bucket:   aws.String(d.s.cfg.Bucket),
		Key:      aws.String(staging),
		Metadata: map[string]string{sessionMeta: d.id.Bare()},
	})
	cancel()
	if err != nil {
		return fmt.Errorf("starting the multipart upload of session %s again: %w", d.id, classify(err))
	}
	uploadID := aws.ToString(out.UploadId)
	copied, err := d.copyParts(ctx, staging, uploadID, len(rec.Parts))
	if err != nil {
		d.abortQuietly(staging, uploadID)
		return err
	}
	rec.UploadID, rec.Parts, rec.Base = uploadID, make([]part, len(copied)), sent
	for i, c := range copied {
		rec.Parts[i] = part{N: aws.ToInt32(c.PartNumber), ETag: aws.ToString(c.ETag), Size: d.partLen(aws.ToInt32(c.PartNumber))}
	}
	if err := d.record(rec, true); err != nil {
		d.abortQuietly(staging, uploadID)
		return err
	}
	d.mu.Lock()
	d.rec = rec
	d.mu.Unlock()
	return nil
}

// copyParts copies the first n parts of the staging object into the
// multipart upload uploadID at key.
func (d *data) copyParts(ctx context.Context, key, uploadID string, n int) ([]types.CompletedPart, error) {
	bucket := d.s.cfg.Bucket
	source := bucket + "/" + strings.ReplaceAll(url.PathEscape(d.s.StagingKey(d.id)), "%2F", "/")
	parts := make([]types.CompletedPart, 0, n)
	for p := int32(1); p <= int32(n); p++ {
		first := int64(p-1) * d.psize
		rctx, cancel := d.s.requestContext(ctx)
		out, err := d.s.client.UploadPartCopy(rctx, &s3.UploadPartCopyInput{
			Bucket:          aws.String(bucket),
			Key:             aws.String(key),
			UploadId:        aws.String(uploadID),
			PartNumber:      aws.Int32(p),
			CopySource:      aws.String(source),
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", first, first+d.partLen(p)-1)),
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("copying part %d of session %s to %s: %w", p, d.id, key, classify(err))
		}
		if out.CopyPartResult == nil || out.CopyPartResult.ETag == nil {
			return nil, fmt.Errorf("copying part %d of session %s to %s: no ETag in the answer", p, d.id, key)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(p), ETag: out.CopyPartResult.ETag})
	}
	return parts, nil
}

// readStaged reads the staging object from off to end.
func (d *data) readStaged(off, end int64) (io.ReadCloser, error) {
	if off >= end {
		return io.NopCloser(strings.NewReader("")), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The request timeout bounds the wait for the answer, not the
	// reading of the body.
	t := time.AfterFunc(d.s.cfg.RequestTimeout, cancel)
	out, err := d.s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(d.s.cfg.Bucket),
		Key:    aws.String(d.s.StagingKey(d.id)),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, end-1)),
	})
	if !t.Stop() || err != nil {
		cancel()
		if err == nil {
			_ = out.Body.Close()
			err = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("reading the staged upload of session %s: %w", d.id, classify(err))
	}
	return &cancelBody{ReadCloser: out.Body, cancel: cancel}, nil
}

// cancelBody is a response body that ends its request's context when it
// is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Location implements [Located].
func (d *data) Location(ctx context.Context) (bucket, key string, err error) {
	if err := d.stage(ctx); err != nil {
		return "", "", err
	}
	return d.s.cfg.Bucket, d.s.StagingKey(d.id), nil
}

// stop ends the part upload running in the background, if any, and
// returns what the session holds: its record, the bytes held and its part
// size. Remove and Forget start with it.
func (d *data) stop() (rec record, held, psize int64) {
	if u := d.up; u != nil {
		u.cancel()
		_ = d.wait()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rec, d.heldLocked(), d.psize
}

// Remove implements [session.Data]: it aborts the multipart uploads,
// deletes the staging object and the local files. An upload in place
// stays there.
func (d *data) Remove() error {
	if err := d.s.checkGuard(context.Background(), d.id); errors.Is(err, session.ErrMoved) {
		// Another node continues the session: its bucket objects are
		// that node's.
		return d.Forget()
	}
	rec, held, psize := d.stop()
	first := max(int32(len(rec.Parts)), 1) // with the last sent part's, left by a crash
	staged := rec.Staged
	ctx := context.Background()
	var errs []error
	if rec.UploadID != "" && !d.placed {
		if err := d.abort(rec.Key, rec.UploadID); err != nil {
			errs = append(errs, err)
		} else {
			rec.UploadID, rec.Parts = "", nil
		}
	} else if d.placed {
		rec.UploadID, rec.Parts = "", nil
	}
	if rec.CopyID != "" {
		if err := d.abort(d.dest, rec.CopyID); err != nil {
			errs = append(errs, err)
		} else {
			rec.CopyID = ""
		}
	}
	if (rec.Staged || rec.Base > 0 || rec.Key == d.s.StagingKey(d.id)) && !rec.Done {
		if err := d.s.deleteObject(ctx, d.s.StagingKey(d.id)); err != nil {
			errs = append(errs, err)
		} else {
			rec.Staged, rec.Base, rec.Key = false, 0, ""
		}
	} else if rec.Done {
		rec.Staged, rec.Done = false, false
	}
	if !staged { // else they were deleted when the upload was staged
		errs = append(errs, d.removeParts(first, held, psize)...)
	}
	d.mu.Lock()
	d.rec = rec
	d.local, d.skip, d.last, d.placed = 0, 0, nil, false
	d.mu.Unlock()
	d.s.open.CompareAndDelete(d.id, d)
	return errors.Join(errs...)
}

// removeParts deletes the local part files from part first on, of a
// session holding held bytes in parts of psize bytes (0 while the part
// size is not known, when the only file is part 1's).
func (d *data) removeParts(first int32, held, psize int64) []error {
	if psize <= 0 {
		first, psize = 1, held+1
	}
	var errs []error
	for p := first; int64(p-1)*psize < max(held, 1); p++ {
		if err := removeFile(d.partPath(p)); err != nil {
			errs = append(errs, fmt.Errorf("deleting local part: %w", err))
		}
	}
	return errs
}

// abortQuietly aborts a multipart upload that is not wanted after a
// failure, logging what fails: a bucket rule that aborts incomplete
// multipart uploads deletes what is left.
func (d *data) abortQuietly(key, uploadID string) {
	if err := d.abort(key, uploadID); err != nil {
		d.s.logger.Warn("aborting an unwanted multipart upload", zap.String("session_id", d.id.Wire()), zap.Error(err))
	}
}

// abort aborts a multipart upload; one that is gone is fine.
func (d *data) abort(key, uploadID string) error {
	rctx, cancel := d.s.requestContext(context.Background())
	defer cancel()
	_, err := d.s.client.AbortMultipartUpload(rctx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(d.s.cfg.Bucket),
		Key:      aws.String(key),
		UploadId: aws.String(uploadID),
	})
	if err != nil && !isNoSuchUpload(err) && httpStatus(err) != http.StatusNotFound {
		return fmt.Errorf("aborting the multipart upload of session %s: %w", d.id, classify(err))
	}
	return nil
}

// Close implements [session.Data]: it waits for the part upload in
// flight.
func (d *data) Close() error {
	_ = d.wait()
	d.s.open.CompareAndDelete(d.id, d)
	return nil
}

// Interface guards
var (
	_ session.Data       = (*data)(nil)
	_ session.DataReader = (*data)(nil)
	_ Located            = (*data)(nil)
)
