package s3store

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"sync"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// nopJournal records nothing.
type nopJournal struct{}

func (nopJournal) Record(json.RawMessage, bool) error { return nil }

// memJournal keeps the last record.
type memJournal struct {
	mu  sync.Mutex
	rec json.RawMessage
}

func (j *memJournal) Record(rec json.RawMessage, _ bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rec = append(json.RawMessage(nil), rec...)
	return nil
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newID returns a fresh session id.
func newID() protocol.SessionID {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return protocol.NewSessionID(b)
}

// appendAll appends b to d in pieces of at most n bytes.
func appendAll(t *testing.T, d *data, b []byte, n int) {
	t.Helper()
	for len(b) > 0 {
		k := min(n, len(b))
		if got, err := d.Append(bytes.NewReader(b[:k]), int64(k)); err != nil || got != int64(k) {
			t.Fatalf("Append(%d) = %d, %v", k, got, err)
		}
		b = b[k:]
	}
}

// TestTruncate rewinds an upload, as recovery does after the machine
// restarted, to offsets in a local file, in a part in the bucket, and in
// a staged upload: Size reports the offset, the bytes sent again are
// taken, and the object comes out exact.
func TestTruncate(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	content := testutil.RandomBytes(70, 3*P+100)
	total := int64(len(content))
	for _, c := range []struct {
		name     string
		held, to int64
		readBack bool
	}{
		{"local", 2*P + 50, 2*P + 10, false},
		{"part boundary", 2*P + 50, P, false},
		{"inside a sent part", 2*P + 50, P + 10, false},
		{"to zero", 2*P + 50, 0, false},
		{"staged", total, P + 10, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "truncate/" + c.name
			dest := session.Destination{Root: "/", Path: key}
			id := newID()
			d, err := e.st.openData(session.DataRef{ID: id, Total: total, Dest: dest, Journal: &memJournal{}})
			if err != nil {
				t.Fatal(err)
			}
			d.readBack = c.readBack
			appendAll(t, d, content[:c.held], 3<<20)
			if c.readBack {
				rc, err := d.NewReader(0)
				if err != nil {
					t.Fatalf("NewReader: %v", err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(b, content) {
					t.Fatal("read back other bytes")
				}
			}
			_ = d.wait()
			if err := d.Truncate(c.to); err != nil {
				t.Fatalf("Truncate(%d): %v", c.to, err)
			}
			if got := d.Size(); got != c.to {
				t.Fatalf("Size after Truncate(%d) = %d", c.to, got)
			}
			appendAll(t, d, content[c.to:], 2<<20)
			if got := d.Size(); got != total {
				t.Fatalf("Size = %d, want %d", got, total)
			}
			if err := d.Place(t.Context(), dest, false); err != nil {
				t.Fatalf("Place: %v", err)
			}
			e.assertObject(key, content)
			if err := d.Remove(); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			e.assertObject(key, content)
			e.assertTailEmpty(e.cfg.TailDir)
		})
	}
	e.assertBucket("truncate/inside a sent part", "truncate/local", "truncate/part boundary", "truncate/staged", "truncate/to zero")
}

// TestReadBackUnfinished reads an upload that is not complete: the bytes
// in local files can be read, those in the bucket cannot.
func TestReadBackUnfinished(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	content := testutil.RandomBytes(71, 3*P)
	d, err := e.st.openData(session.DataRef{ID: newID(), Total: int64(len(content)), Dest: session.Destination{Root: "/", Path: "x"}, Journal: &memJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, d, content[:2*P+10], 1<<20)
	_ = d.wait()
	from := int64(d.firstLocal()-1)*P + 3
	if _, err := d.NewReader(0); !errors.Is(err, session.ErrDataLost) {
		t.Errorf("reading bytes in the bucket: %v, want ErrDataLost", err)
	}
	rc, err := d.NewReader(from)
	if err != nil {
		t.Fatalf("NewReader(%d): %v", from, err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(b, content[from:2*P+10]) {
		t.Errorf("read %d bytes from %d, not the upload's", len(b), from)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	e.assertBucket()
}

// TestClassify checks what failed requests mean for a session.
func TestClassify(t *testing.T) {
	status := func(code int) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}},
			Err:      errors.New("answer"),
		}}
	}
	for _, c := range []struct {
		err  error
		want error
	}{
		{status(403), fs.ErrPermission},
		{status(500), session.ErrStorageUnavailable},
		{status(503), session.ErrStorageUnavailable},
		{&smithyhttp.RequestSendError{Err: errors.New("connection refused")}, session.ErrStorageUnavailable},
	} {
		if got := classify(c.err); !errors.Is(got, c.want) {
			t.Errorf("classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if got := classify(status(400)); errors.Is(got, session.ErrStorageUnavailable) || errors.Is(got, fs.ErrPermission) {
		t.Errorf("classify(400) = %v", got)
	}
}
