package caddymodule_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// twoNodes is one in-process Caddy with two sites on 127.0.0.1, each a
// node of a farm with its own session_dir, sharing sessions through one
// S3 bucket.
type twoNodes struct {
	t      testing.TB
	tester *caddytest.Tester
	s3     *testutil.S3Server
	ports  [2]int
	dirs   [2]string
	// extra holds extra lines of each node's sessions shared block.
	extra [2]string
}

func newTwoNodes(t testing.TB, s3srv *testutil.S3Server, extra0, extra1 string) *twoNodes {
	t.Helper()
	dir := t.TempDir()
	f := &twoNodes{t: t, s3: s3srv, extra: [2]string{extra0, extra1}}
	for i := range 2 {
		f.ports[i] = testutil.FreePort(t)
		f.dirs[i] = filepath.Join(dir, fmt.Sprintf("node%d", i))
	}
	f.tester = caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort, LoadRequestTimeout: 30 * time.Second})
	f.load()
	return f
}

func (f *twoNodes) load() {
	f.t.Helper()
	var sites strings.Builder
	for i := range 2 {
		fmt.Fprintf(&sites, `:%d {
	bind 127.0.0.1
	bits_upload {
		session_dir %s
		%s
		sessions shared {
			forward_timeout 1s
			%s
		}
	}
}
`, f.ports[i], f.dirs[i], s3Storage(f.s3, ""), f.extra[i])
	}
	f.tester.InitServer(fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	auto_https off
	metrics
}
%s`, adminPort, sites.String()), "caddyfile")
	if f.t.Failed() {
		f.t.FailNow()
	}
}

// url returns the URL of path on node i.
func (f *twoNodes) url(i int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", f.ports[i], path)
}

// onNode returns a copy of s that sends its packets to node i.
func onNode(f *twoNodes, s *client.Session, i int, path string) *client.Session {
	c := *s
	c.URL = f.url(i, path)
	return &c
}

// TestSharedForward sends the fragments of sessions to both nodes in
// turn: every packet that reaches the node that does not own the session
// is forwarded to the one that does, the Acks are relayed exactly, the
// tail that only the owner holds is never lost, and the upload lands
// byte for byte.
func TestSharedForward(t *testing.T) {
	s3srv := testutil.StartS3(t)
	f := newTwoNodes(t, s3srv, "", "")
	bc := s3Client(s3srv)
	c := newClient()
	before := opsScrape(t)

	data := randomBytes(t, 2*s3Part+12345)
	s := create(t, c, f.url(0, "/shared/a.bin"))
	step := int64(1 << 20)
	for i, first := 0, int64(0); first < int64(len(data)); i, first = i+1, first+step {
		last := min(first+step, int64(len(data))) - 1
		on := onNode(f, s, i%2, "/shared/a.bin")
		a, err := on.Fragment(context.Background(), data[first:last+1], first, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if last+1 < int64(len(data)) {
			checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderReceivedContentRange: itoa(int(last + 1))}})
		} else {
			checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderReceivedContentRange: itoa(len(data))}})
		}
		if got := a.Header.Get(protocol.HeaderPacketType); got != "Ack" {
			t.Fatalf("relayed Ack has packet type %q", got)
		}
	}
	assertObject(t, bc, s3srv.Bucket, "shared/a.bin", data)
	// A repeated final fragment at the other node gets the same Ack.
	on := onNode(f, s, 1, "/shared/a.bin")
	a, err := on.Fragment(context.Background(), data[len(data)-10:], int64(len(data)-10), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderReceivedContentRange: itoa(len(data))}})
	if a, err := on.Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("close through the other node: %v %+v", err, a)
	}
	// Closed: a repeated Close anywhere is 200, a fragment is not found.
	if a, err := onNode(f, s, 0, "/shared/a.bin").Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("repeated close: %v %+v", err, a)
	}
	a, err = onNode(f, s, 1, "/shared/a.bin").Fragment(context.Background(), data[:10], 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 500, code: protocol.BGSessionNotFound})

	after := opsScrape(t)
	// The odd fragments, the repeated final fragment, the Close through
	// node 1 and the fragment after it (node 1 still has node 0 cached
	// as the owner; node 0 answers from its tombstone). The repeated
	// Close at node 0 is answered from the shared tombstone.
	fragments := (len(data) + int(step) - 1) / int(step)
	want := float64(fragments/2 + 3)
	fw := after[`caddy_bits_upload_forwards_total{result="ok"}`] - before[`caddy_bits_upload_forwards_total{result="ok"}`]
	if fw != want {
		t.Errorf("%v forwards counted, want %v", fw, want)
	}
	if tk := after["caddy_bits_upload_takeovers_total"] - before["caddy_bits_upload_takeovers_total"]; tk != 0 {
		t.Errorf("%v takeovers, want none: both nodes were up", tk)
	}
	assertBucketClean(t, bc, s3srv.Bucket, "", f.dirs[0])
	assertBucketClean(t, bc, s3srv.Bucket, "", f.dirs[1])
}

// TestSharedTakeover makes a session's owner unreachable (it advertises
// an address nobody listens on): the other node takes the session over,
// answers 416 at the last part in the bucket, and the client finishes
// there from that offset. The old owner, which still holds the session,
// finds out before it sends another part: it answers 503, forgets the
// session, and forwards the client's retry to the new owner.
func TestSharedTakeover(t *testing.T) {
	s3srv := testutil.StartS3(t)
	dead := testutil.FreePort(t)
	f := newTwoNodes(t, s3srv, fmt.Sprintf("advertise http://127.0.0.1:%d", dead), "")
	bc := s3Client(s3srv)
	c := newClient()
	before := opsScrape(t)

	data := randomBytes(t, 3*s3Part+777)
	s := create(t, c, f.url(0, "/t/b.bin"))
	checkAck(t, fragment(t, s, data, 0, s3Part+4), ack{status: 200})
	// The next fragment waits for the first part's upload, so after it
	// the first part is in the bucket and published.
	checkAck(t, fragment(t, s, data, s3Part+5, s3Part+9), ack{status: 200})
	waitFor(t, 5*time.Second, func() bool {
		st := sharedState(t, bc, s3srv.Bucket, s.ID)
		return strings.Contains(st, `"epoch":1`) && strings.Contains(st, `"parts":[{"n":1`)
	})

	// Node 1 cannot reach node 0, takes the session over, and finds the
	// first part in the bucket: the rest is to be sent again.
	on1 := onNode(f, s, 1, "/t/b.bin")
	a, err := on1.Fragment(context.Background(), data[s3Part+10:s3Part+20], s3Part+10, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 416, headers: map[string]string{protocol.HeaderReceivedContentRange: itoa(s3Part)}})
	if got := sharedState(t, bc, s3srv.Bucket, s.ID); !strings.Contains(got, `"epoch":2`) {
		t.Fatalf("shared state after the takeover: %s", got)
	}

	// The old owner still holds the session and its tail. Before it
	// sends its next part it finds out, forgets the session, and the
	// packets it gets from then on go to the new owner, which wants the
	// bytes from the first part on.
	on0 := onNode(f, s, 0, "/t/b.bin")
	next := int64(s3Part + 10)
	for tries := 0; ; tries++ {
		last := min(next+s3Part, int64(len(data))) - 1
		a, err = on0.Fragment(context.Background(), data[next:last+1], next, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != 200 {
			break
		}
		if tries == 3 {
			t.Fatal("the old owner keeps accepting the session's fragments")
		}
		next = a.Received
	}
	if a.Status == 503 {
		checkAck(t, a, ack{status: 503, code: protocol.HTTPError(503)})
	} else {
		checkAck(t, a, ack{status: 416, headers: map[string]string{protocol.HeaderReceivedContentRange: itoa(s3Part)}})
	}

	// From the offset the new owner reported, through either node.
	step := int64(1 << 20)
	for i, first := 0, int64(s3Part); first < int64(len(data)); i++ {
		last := min(first+step, int64(len(data))) - 1
		on := onNode(f, s, i%2, "/t/b.bin")
		a, err := on.Fragment(context.Background(), data[first:last+1], first, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != 200 {
			t.Fatalf("fragment %d-%d through node %d: %d %s %s", first, last, i%2, a.Status, a.Header.Get(protocol.HeaderErrorCode), a.Header.Get(protocol.HeaderReceivedContentRange))
		}
		first = a.Received
	}
	assertObject(t, bc, s3srv.Bucket, "t/b.bin", data)
	if a, err := on1.Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("close: %v %+v", err, a)
	}
	after := opsScrape(t)
	if tk := after["caddy_bits_upload_takeovers_total"] - before["caddy_bits_upload_takeovers_total"]; tk != 1 {
		t.Errorf("%v takeovers, want 1", tk)
	}
	assertBucketClean(t, bc, s3srv.Bucket, "", f.dirs[0])
	assertBucketClean(t, bc, s3srv.Bucket, "", f.dirs[1])
	if held := heldSessions(t, f.dirs[0]); len(held) != 0 {
		t.Errorf("the old owner still holds %v", held)
	}
}

// sharedState returns the shared state object of session id, or "".
func sharedState(t testing.TB, c *s3.Client, bucket string, id protocol.SessionID) string {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(".bits/sessions/" + id.Bare())})
	if err != nil {
		return ""
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return string(b)
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSharedNeedsS3 checks that shared sessions are refused, with a clear
// error, without a storage whose bucket the nodes share, and that an
// advertised address must be a plain http or https URL.
func TestSharedNeedsS3(t *testing.T) {
	srv := newServer(t, "")
	for _, tc := range []struct{ options, want string }{
		{"sessions shared", "sessions shared needs storage s3"},
		{"sessions shared {\n\t\t\tadvertise ftp://10.0.0.5\n\t\t}", "sessions advertise must be an http or https URL"},
		{"sessions shared {\n\t\t\tadvertise http://10.0.0.5/bits\n\t\t}", "sessions advertise must be an http or https URL"},
	} {
		srv.Options = tc.options
		status, body := opsPostConfig(t, srv, func(map[string]any) {})
		if status == 200 || !strings.Contains(body, tc.want) {
			t.Errorf("%q: %d %s, want an error containing %q", tc.options, status, body, tc.want)
		}
	}
}

// BenchmarkSharedForwardHop measures what forwarding costs a fragment:
// sessions of 4 MiB in 256 KiB fragments (no part boundary is crossed,
// so no request to the store is made per fragment), sent either to the
// node that owns them or to the other node, which forwards each fragment.
// ns/op is per fragment; compare the two sub-benchmarks.
func BenchmarkSharedForwardHop(b *testing.B) {
	s3srv := testutil.StartS3(b)
	f := newTwoNodes(b, s3srv, "", "")
	c := newClient()
	const frag, total = 256 << 10, 4 << 20
	data := randomBytes(b, total)
	for _, via := range []struct {
		name string
		node int
	}{{"owner", 0}, {"forwarded", 1}} {
		b.Run(via.name, func(b *testing.B) {
			b.SetBytes(frag)
			var s *client.Session
			var on *client.Session
			first := int64(0)
			for b.Loop() {
				if s == nil || first >= total {
					if s != nil {
						b.StopTimer()
						_, _ = s.Cancel(context.Background())
						b.StartTimer()
					}
					s = create(b, c, f.url(0, "/hop.bin"))
					on = onNode(f, s, via.node, "/hop.bin")
					first = 0
				}
				// Stay below the end: the last byte would place the upload.
				a, err := on.Fragment(context.Background(), data[first:first+frag], first, total+1)
				if err != nil || a.Status != 200 {
					b.Fatalf("fragment: %v %+v", err, a)
				}
				first += frag
			}
			if s != nil {
				_, _ = s.Cancel(context.Background())
			}
		})
	}
}
