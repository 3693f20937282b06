package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// step is one fragment sent in a decision-table test.
type step struct {
	first, last int64
	total       int64  // 0 means the upload's length
	body        []byte // nil means the upload's own bytes of the range
	unread      bool   // the body must be left unread

	wantAction   protocol.FragmentAction
	wantWritten  int64
	wantReceived int64
	wantComplete bool
	wantErr      error
}

func TestWriteDecisionTable(t *testing.T) {
	const n = 300
	a := randBytes(1, n)
	b := randBytes(2, n) // differs from a at (practically) every byte
	for i := range b {
		if b[i] == a[i] {
			b[i] ^= 0xff
		}
	}
	tests := []struct {
		name  string
		steps []step
		want  []byte // data file afterwards; nil means no data file
	}{
		{
			name: "in-order appends",
			steps: []step{
				{first: 0, last: 99, wantAction: protocol.Append, wantWritten: 100, wantReceived: 100},
				{first: 100, last: 199, wantAction: protocol.Append, wantWritten: 100, wantReceived: 200},
				{first: 200, last: 299, wantAction: protocol.Append, wantWritten: 100, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
		{
			name: "single fragment",
			steps: []step{
				{first: 0, last: n - 1, wantAction: protocol.Append, wantWritten: n, wantReceived: n, wantComplete: true},
			},
			want: a,
		},
		{
			name: "one-byte fragments at the edges",
			steps: []step{
				{first: 0, last: 0, wantAction: protocol.Append, wantWritten: 1, wantReceived: 1},
				{first: 1, last: 298, wantAction: protocol.Append, wantWritten: 298, wantReceived: 299},
				{first: 299, last: 299, wantAction: protocol.Append, wantWritten: 1, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
		{
			// MSDN: 0-100 then 50-150 writes only 101-150. The overlapping
			// bytes carry different data, so a rewrite would show.
			name: "overlap writes only the new tail",
			steps: []step{
				{first: 0, last: 99, wantAction: protocol.Append, wantWritten: 100, wantReceived: 100},
				{first: 50, last: 149, body: append(append([]byte{}, b[50:100]...), a[100:150]...),
					wantAction: protocol.Append, wantWritten: 50, wantReceived: 150},
			},
			want: a[:150],
		},
		{
			name: "overlap by one byte",
			steps: []step{
				{first: 0, last: 99, wantAction: protocol.Append, wantWritten: 100, wantReceived: 100},
				{first: 99, last: 299, body: append([]byte{b[99]}, a[100:]...),
					wantAction: protocol.Append, wantWritten: 200, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
		{
			name: "overlap from zero completes",
			steps: []step{
				{first: 0, last: 149, wantAction: protocol.Append, wantWritten: 150, wantReceived: 150},
				{first: 0, last: 299, body: append(append([]byte{}, b[:150]...), a[150:]...),
					wantAction: protocol.Append, wantWritten: 150, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
		{
			name: "full retransmission is already held",
			steps: []step{
				{first: 0, last: 99, wantAction: protocol.Append, wantWritten: 100, wantReceived: 100},
				{first: 0, last: 99, body: b[:100], unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 100},
			},
			want: a[:100],
		},
		{
			name: "fragment inside the held bytes",
			steps: []step{
				{first: 0, last: 199, wantAction: protocol.Append, wantWritten: 200, wantReceived: 200},
				{first: 20, last: 79, body: b[20:80], unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 200},
				{first: 199, last: 199, body: b[199:200], unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 200},
			},
			want: a[:200],
		},
		{
			// "bytes a-(a-1)/total" is an empty range; it moves nothing.
			name: "empty ranges",
			steps: []step{
				{first: 0, last: -1, unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 0},
				{first: 0, last: 99, wantAction: protocol.Append, wantWritten: 100, wantReceived: 100},
				{first: 100, last: 99, unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 100},
				{first: 50, last: 49, unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 100},
				{first: 101, last: 100, unread: true, wantAction: protocol.Gap, wantReceived: 100},
				{first: 100, last: 299, wantAction: protocol.Append, wantWritten: 200, wantReceived: 300, wantComplete: true},
				{first: 300, last: 299, unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
		{
			name: "gap is discarded",
			steps: []step{
				{first: 0, last: 99, wantAction: protocol.Append, wantWritten: 100, wantReceived: 100},
				{first: 101, last: 199, unread: true, wantAction: protocol.Gap, wantReceived: 100},
				{first: 200, last: 299, unread: true, wantAction: protocol.Gap, wantReceived: 100},
				{first: 100, last: 299, wantAction: protocol.Append, wantWritten: 200, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
		{
			name: "gap as the first fragment",
			steps: []step{
				{first: 10, last: 19, unread: true, wantAction: protocol.Gap, wantReceived: 0},
			},
			want: nil,
		},
		{
			name: "total changed",
			steps: []step{
				{first: 0, last: 99, wantAction: protocol.Append, wantWritten: 100, wantReceived: 100},
				{first: 100, last: 199, total: 400, body: b[100:200], unread: true, wantReceived: 100, wantErr: ErrTotalChanged},
				{first: 0, last: 99, total: 100, body: b[:100], unread: true, wantReceived: 100, wantErr: ErrTotalChanged},
				{first: 100, last: 299, wantAction: protocol.Append, wantWritten: 200, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
		{
			name: "retransmitted final fragment after completion",
			steps: []step{
				{first: 0, last: 299, wantAction: protocol.Append, wantWritten: 300, wantReceived: 300, wantComplete: true},
				{first: 200, last: 299, body: b[200:], unread: true, wantAction: protocol.AlreadyHeld, wantReceived: 300, wantComplete: true},
			},
			want: a,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openStore(t, "", Options{})
			sess := create(t, store, "", "f.bin")
			for i, s := range tt.steps {
				total := s.total
				if total == 0 {
					total = n
				}
				var body io.Reader
				switch {
				case s.unread:
					body = unreadable{t}
				case s.body != nil:
					body = bytes.NewReader(s.body)
				default:
					body = bytes.NewReader(a[s.first : s.last+1])
				}
				res, err := writeBody(t, sess, rng(s.first, s.last, total), body)
				if s.wantErr != nil {
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("step %d: err = %v, want %v", i, err, s.wantErr)
					}
				} else if err != nil {
					t.Fatalf("step %d: Write: %v", i, err)
				}
				if s.wantErr == nil && res.Action != s.wantAction {
					t.Errorf("step %d: Action = %v, want %v", i, res.Action, s.wantAction)
				}
				if res.Written != s.wantWritten || res.Received != s.wantReceived || res.Complete != s.wantComplete {
					t.Errorf("step %d: result = %+v, want Written %d Received %d Complete %v",
						i, res, s.wantWritten, s.wantReceived, s.wantComplete)
				}
				if res.Total != n {
					t.Errorf("step %d: result Total = %d, want %d", i, res.Total, n)
				}
				st := sess.State()
				if st.Received != s.wantReceived || st.Total != n || st.Complete() != s.wantComplete {
					t.Errorf("step %d: State Received %d Total %d Complete %v; want %d %d %v",
						i, st.Received, st.Total, st.Complete(), s.wantReceived, n, s.wantComplete)
				}
				if size, err := os.Stat(dataPath(sess)); err == nil && size.Size() != st.Received {
					t.Errorf("step %d: data file holds %d bytes, Received = %d", i, size.Size(), st.Received)
				}
			}
			if tt.want == nil {
				mustNotExist(t, dataPath(sess))
				return
			}
			if got := fileSum(t, dataPath(sess)); got != sum(tt.want) {
				t.Errorf("data file SHA-256 = %s, want %s", got, sum(tt.want))
			}
			if sess.State().Complete() {
				if d := sess.Digest(); !bytes.Equal(d, sha(tt.want)) {
					t.Errorf("Digest = %x, want %x", d, sha(tt.want))
				}
			} else if d := sess.Digest(); d != nil {
				t.Errorf("Digest of an incomplete upload = %x, want nil", d)
			}
		})
	}
}

func sha(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

func TestWriteEmptyUpload(t *testing.T) {
	for _, header := range []string{"bytes 0--1/0", "bytes */0", "bytes 0-0/0"} {
		t.Run(header, func(t *testing.T) {
			r, err := protocol.ParseContentRange(header)
			if err != nil {
				t.Fatalf("ParseContentRange(%q): %v", header, err)
			}
			if r != (protocol.Range{First: 0, Last: -1, Total: 0}) {
				t.Fatalf("ParseContentRange(%q) = %+v", header, r)
			}
			store := openStore(t, "", Options{})
			sess := create(t, store, "", "empty.bin")
			for i := 0; i < 2; i++ { // the repeat is a retransmission
				res, err := writeBody(t, sess, r, bytes.NewReader(nil))
				if err != nil {
					t.Fatalf("Write #%d: %v", i, err)
				}
				if !res.Complete || res.Received != 0 || res.Total != 0 || res.Written != 0 {
					t.Fatalf("Write #%d = %+v, want complete with 0 bytes", i, res)
				}
			}
			st := sess.State()
			if !st.Complete() || st.Total != 0 || st.Received != 0 {
				t.Fatalf("State = %+v", st)
			}
			if size := fileSize(t, dataPath(sess)); size != 0 {
				t.Fatalf("data file size %d, want 0", size)
			}
			empty := sha256.Sum256(nil)
			if !bytes.Equal(sess.Digest(), empty[:]) {
				t.Fatalf("Digest = %x, want %x", sess.Digest(), empty)
			}
			if st := sess.State(); st.Total != 0 || !st.Complete() {
				t.Fatalf("state: total %d, complete %v", st.Total, st.Complete())
			}
		})
	}
}

// TestWriteFirstFragmentPersistsTotal checks that the total of a
// multi-fragment upload reaches the state file with its first fragment,
// that a fragment that writes nothing writes no state, and that a
// single-fragment upload's total stays in memory until it is settled.
func TestWriteFirstFragmentPersistsTotal(t *testing.T) {
	store := openStore(t, "", Options{})
	content := randBytes(3, 1000)

	multi := create(t, store, "", "m.bin")
	mustWrite(t, multi, content, 0, 9)
	if d := diskState(t, multi); d.Total != 1000 {
		t.Errorf("state file total after the first of several fragments = %d, want 1000", d.Total)
	}

	// A gap holds nothing a restart must find: nothing is stored, and the
	// next fragment brings the total again.
	gap := create(t, store, "", "g.bin")
	if res, err := writeBody(t, gap, rng(500, 999, 1000), unreadable{t}); err != nil || res.Action != protocol.Gap {
		t.Fatalf("gap first fragment: %+v, %v", res, err)
	}
	mustNotExist(t, statePath(gap))
	if d := savedState(t, gap); d != nil {
		t.Errorf("state stored after a gap as first fragment: %+v", d)
	}
	if st := gap.State(); st.Total != 1000 {
		t.Errorf("total after a gap as first fragment = %d, want 1000", st.Total)
	}

	// A single-fragment upload writes no state at all until it is
	// settled: its total and digest reach the disk with the next update,
	// and completion takes no durable checkpoint.
	single := create(t, store, "", "s.bin")
	mustWrite(t, single, content, 0, 999)
	mustNotExist(t, statePath(single))
	if d := savedState(t, single); d != nil {
		t.Errorf("state stored after a single-fragment upload: %+v", d)
	}
	if st := single.State(); st.Total != 1000 || !bytes.Equal(st.Digest, sha(content)) {
		t.Errorf("state after a single-fragment upload: total %d digest %x", st.Total, st.Digest)
	}
	// Recording a notification's outcome checkpoints it durably.
	var beforeOutcome *State
	calls := 0
	_, err := settle(t, single, SettleOptions{Notify: func(ctx context.Context, d *Delivery) (FinalInfo, error) {
		beforeOutcome = savedState(t, single)
		return notifyWith(FinalInfo{ReplyURL: "http://x/"}, &calls)(ctx, d)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if beforeOutcome != nil {
		t.Errorf("state stored before the outcome: %+v", beforeOutcome)
	}
	if d := diskState(t, single); d.HashOffset != 1000 || len(d.HashState) == 0 || d.Final == nil || d.Total != 1000 {
		t.Errorf("state file after the outcome: hash_offset %d, hash state %d bytes, final %v, total %d",
			d.HashOffset, len(d.HashState), d.Final, d.Total)
	}
}

func TestWriteBodyLongerThanRange(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	content := randBytes(4, 100)
	// The body carries 50 extra bytes; only the range's 100 may be stored.
	body := bytes.NewReader(append(append([]byte{}, content...), fill(0xee, 50)...))
	res, err := writeBody(t, sess, rng(0, 99, 100), body)
	if err != nil || res.Written != 100 || !res.Complete {
		t.Fatalf("Write = %+v, %v", res, err)
	}
	if body.Len() != 50 {
		t.Errorf("Write consumed %d bytes beyond the range", 50-body.Len())
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content) {
		t.Fatalf("data file SHA-256 %s, want %s", got, sum(content))
	}
}

func TestWriteMultiFragmentDigest(t *testing.T) {
	sizes := []int{1, 4095, 256 << 10, 256<<10 + 1, 1 << 20}
	for _, size := range sizes {
		for _, frag := range []int{1000, 64 << 10, 300 << 10} {
			if size/frag > 300 {
				continue
			}
			store := openStore(t, "", Options{CheckpointBytes: 100 << 10})
			sess := create(t, store, "", "f.bin")
			content := randBytes(uint64(size*7+frag), size)
			upload(t, sess, content, frag)
			if got := fileSum(t, dataPath(sess)); got != sum(content) {
				t.Errorf("size %d frag %d: data SHA-256 %s, want %s", size, frag, got, sum(content))
			}
			if !bytes.Equal(sess.Digest(), sha(content)) {
				t.Errorf("size %d frag %d: Digest %x, want %x", size, frag, sess.Digest(), sha(content))
			}
			// The last checkpoint is at most the upload's length, and only
			// a multiple of CheckpointBytes: completion adds none.
			waitCheckpoint(t, sess)
			if d := savedState(t, sess); d != nil && (d.HashOffset > int64(size) || (d.HashOffset > 0 && d.HashOffset < 100<<10)) {
				t.Errorf("size %d frag %d: saved hash_offset %d", size, frag, d.HashOffset)
			}
		}
	}
}

// TestWriteRandomClient drives a session like a misbehaving client:
// retransmissions, overlaps, gaps and short bodies in random order. The
// result must always be the exact upload.
func TestWriteRandomClient(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		size := 1 + r.IntN(300<<10)
		content := randBytes(seed, size)
		store := openStore(t, "", Options{CheckpointBytes: 1 + int64(r.IntN(64<<10))})
		sess := create(t, store, "", "f.bin")
		for steps := 0; !sess.State().Complete(); steps++ {
			if steps > 10000 {
				t.Fatalf("seed %d: no progress", seed)
			}
			recv := sess.State().Received
			first := recv - int64(r.IntN(5000)) + int64(r.IntN(5000))
			first = max(0, min(first, int64(size-1)))
			last := min(first+int64(r.IntN(40<<10)), int64(size-1))
			rg := rng(first, last, int64(size))
			short := r.IntN(5) == 0
			var body io.Reader = bytes.NewReader(content[first : last+1])
			if short {
				body = errAfter(content[first:first+int64(r.IntN(int(last-first+1)))], io.ErrUnexpectedEOF)
			}
			res, err := writeBody(t, sess, rg, body)
			action, _ := protocol.ClassifyFragment(recv, rg)
			if res.Action != action {
				t.Fatalf("seed %d: Action %v for %v at %d, want %v", seed, res.Action, rg, recv, action)
			}
			if err != nil && !(short && errors.Is(err, ErrBodyIncomplete)) {
				t.Fatalf("seed %d: Write %v at %d: %v", seed, rg, recv, err)
			}
			if action != protocol.Append && res.Received != recv {
				t.Fatalf("seed %d: %v moved Received from %d to %d", seed, action, recv, res.Received)
			}
			if action == protocol.Append {
				fi, serr := os.Stat(dataPath(sess))
				if serr != nil || fi.Size() != res.Received {
					t.Fatalf("seed %d: after %v at %d (short %v): result %+v, err %v; data file %v, %v",
						seed, rg, recv, short, res, err, fi, serr)
				}
			}
		}
		if got := fileSum(t, dataPath(sess)); got != sum(content) {
			t.Fatalf("seed %d: data SHA-256 %s, want %s", seed, got, sum(content))
		}
		if !bytes.Equal(sess.Digest(), sha(content)) {
			t.Fatalf("seed %d: Digest %x, want %x", seed, sess.Digest(), sha(content))
		}
	}
}

func TestWriteShortBody(t *testing.T) {
	const bufSize = 256 << 10
	tests := []struct {
		name    string
		size    int
		held    int64 // bytes sent before the short fragment
		first   int64 // the short fragment's range
		last    int64
		arrive  int // body bytes that arrive
		bodyErr error
		wantRec int64
	}{
		{"nothing arrives", 1000, 0, 0, 999, 0, io.ErrUnexpectedEOF, 0},
		{"one byte arrives", 1000, 0, 0, 999, 1, io.ErrUnexpectedEOF, 1},
		{"most arrives", 1000, 0, 0, 999, 600, io.ErrUnexpectedEOF, 600},
		{"all but one", 1000, 0, 0, 999, 999, io.ErrUnexpectedEOF, 999},
		{"plain EOF", 1000, 400, 400, 999, 100, io.EOF, 500},
		{"connection error", 1000, 400, 400, 999, 100, errors.New("connection reset by peer"), 500},
		{"beyond one buffer", 3 * bufSize, 0, 0, 3*bufSize - 1, bufSize + 12345, io.ErrUnexpectedEOF, bufSize + 12345},
		{"exactly one buffer", 3 * bufSize, 0, 0, 3*bufSize - 1, bufSize, io.ErrUnexpectedEOF, bufSize},
		// Overlapping fragment whose body ends inside the already-held
		// part: nothing new arrives.
		{"ends in the held part", 1000, 500, 0, 999, 300, io.ErrUnexpectedEOF, 500},
		{"ends right after the held part", 1000, 500, 0, 999, 500, io.ErrUnexpectedEOF, 500},
		{"overlap then partial", 1000, 500, 0, 999, 700, io.ErrUnexpectedEOF, 700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := randBytes(uint64(tt.size)+uint64(tt.arrive), tt.size)
			store := openStore(t, "", Options{})
			sess := create(t, store, "", "f.bin")
			if tt.held > 0 {
				mustWrite(t, sess, content, 0, tt.held-1)
			}
			body := errAfter(content[tt.first:tt.first+int64(tt.arrive)], tt.bodyErr)
			res, err := writeBody(t, sess, rng(tt.first, tt.last, int64(tt.size)), body)
			if !errors.Is(err, ErrBodyIncomplete) {
				t.Fatalf("Write: err = %v, want ErrBodyIncomplete", err)
			}
			if res.Received != tt.wantRec || res.Written != tt.wantRec-tt.held || res.Complete {
				t.Errorf("result %+v, want Received %d Written %d", res, tt.wantRec, tt.wantRec-tt.held)
			}
			if st := sess.State(); st.Received != tt.wantRec {
				t.Errorf("State().Received = %d, want %d", st.Received, tt.wantRec)
			}
			if tt.wantRec > 0 {
				if size := fileSize(t, dataPath(sess)); size != tt.wantRec {
					t.Errorf("data file %d bytes, want %d", size, tt.wantRec)
				}
				if got := fileSum(t, dataPath(sess)); got != sum(content[:tt.wantRec]) {
					t.Errorf("kept bytes differ from the upload's prefix")
				}
			}
			// The client resumes from what the Ack reported.
			res = mustWrite(t, sess, content, res.Received, int64(tt.size-1))
			if !res.Complete {
				t.Fatalf("resumed upload not complete: %+v", res)
			}
			if got := fileSum(t, dataPath(sess)); got != sum(content) {
				t.Errorf("final data SHA-256 %s, want %s", got, sum(content))
			}
			if !bytes.Equal(sess.Digest(), sha(content)) {
				t.Errorf("Digest %x, want %x", sess.Digest(), sha(content))
			}
		})
	}
}

func TestWriteAfterRemove(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	content := randBytes(5, 100)
	mustWrite(t, sess, content, 0, 49)
	l := lease(t, sess)
	defer l.Release()
	if _, err := l.Remove(RemovedCancelled); err != nil {
		t.Fatal(err)
	}
	_, err := l.Write(rng(50, 99, 100), unreadable{t}, WriteOptions{})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Write on a removed session: %v, want ErrNotFound", err)
	}
	mustHaveNoFiles(t, store.Dir(), sess.ID())
	if _, err := store.Acquire(t.Context(), sess.ID(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire of a removed session: %v, want ErrClosed", err)
	}
}

// TestCheckpointAdvances checks that the state file's checkpoint follows
// CheckpointBytes and CheckpointInterval, and that each checkpoint's hash
// state is exactly the SHA-256 state of the checkpointed prefix.
func TestCheckpointAdvances(t *testing.T) {
	clock := newFakeClock()
	store := openStore(t, "", Options{CheckpointBytes: 1024, CheckpointInterval: 30 * time.Second, Now: clock.Now})
	sess := create(t, store, "", "f.bin")
	content := randBytes(6, 10000)
	steps := []struct {
		last       int64
		advance    int64 // seconds on the fake clock before the write
		wantOffset int64
	}{
		{99, 0, 0},       // 100 bytes: below both thresholds
		{1099, 0, 1100},  // 1000 more: 1100 since the checkpoint at 0
		{1599, 0, 1100},  // 500 since the last checkpoint
		{2099, 0, 1100},  // 1000 since
		{2199, 0, 2200},  // 1100 since
		{2209, 31, 2210}, // 10 bytes, but 31 s since
		{2219, 10, 2210}, // 10 bytes, 10 s
		{9999, 0, 2210},  // completion takes no checkpoint
	}
	var recv int64
	for i, s := range steps {
		clock.Advance(time.Duration(s.advance) * time.Second)
		mustWrite(t, sess, content, recv, s.last)
		recv = s.last + 1
		waitCheckpoint(t, sess)
		d := diskState(t, sess)
		if d.HashOffset != s.wantOffset {
			t.Fatalf("step %d (through %d): state file hash_offset = %d, want %d", i, s.last, d.HashOffset, s.wantOffset)
		}
		if s.wantOffset > 0 {
			h := sha256.New()
			if err := h.(interface{ UnmarshalBinary([]byte) error }).UnmarshalBinary(d.HashState); err != nil {
				t.Fatalf("step %d: hash_state: %v", i, err)
			}
			if got, want := h.Sum(nil), sha(content[:s.wantOffset]); !bytes.Equal(got, want) {
				t.Fatalf("step %d: hash_state sums to %x, want SHA-256 of the first %d bytes %x", i, got, s.wantOffset, want)
			}
			if sess.State().HashState != nil {
				t.Errorf("step %d: State() exposes the hash state", i)
			}
			if d.BootID != bootID() {
				t.Errorf("step %d: boot_id %q, want %q", i, d.BootID, bootID())
			}
		}
	}
}
