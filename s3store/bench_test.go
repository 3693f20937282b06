package s3store

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// paced reads r at about rate bytes per second, as a client's link
// delivers a request body.
type paced struct {
	r     io.Reader
	rate  float64
	start time.Time
	n     int64
}

func (p *paced) Read(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	n, err := p.r.Read(b[:min(len(b), 64<<10)])
	p.n += int64(n)
	if ahead := time.Duration(float64(p.n)/p.rate*float64(time.Second)) - time.Since(p.start); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

// BenchmarkUpload measures uploads of 64 MiB in fragments of 8 MiB,
// with the part uploads in the background (async) or on the request path
// (sync), from a client that sends as fast as it can and from one whose
// link carries 200 or 50 MB/s.
//
//	CADDY_BITS_VERSITYGW=... go test -run '^$' -bench Upload -benchtime 5x ./s3store/
func BenchmarkUpload(b *testing.B) {
	const total, frag = 64 << 20, 8 << 20
	content := testutil.RandomBytes(1, total)
	for _, rate := range []float64{0, 200e6, 50e6} {
		for _, sync := range []bool{false, true} {
			name := fmt.Sprintf("async/client=%.0fMBps", rate/1e6)
			if sync {
				name = fmt.Sprintf("sync/client=%.0fMBps", rate/1e6)
			}
			b.Run(name, func(b *testing.B) {
				e := newEnv(b, nil)
				e.st.syncUploads = sync
				b.SetBytes(total)
				requests := e.cnt.Count()
				for i := 0; b.Loop(); i++ {
					key := fmt.Sprintf("bench-%d.bin", i)
					id := e.create(e.store, key, false).ID()
					for from := int64(0); from < total; from += frag {
						l, err := e.store.Acquire(b.Context(), id, nil)
						if err != nil {
							b.Fatal(err)
						}
						var body io.Reader = bytes.NewReader(content[from : from+frag])
						if rate > 0 {
							body = &paced{r: body, rate: rate}
						}
						_, err = l.Write(protocol.Range{First: from, Last: from + frag - 1, Total: total}, body, session.WriteOptions{})
						l.Release()
						if err != nil {
							b.Fatal(err)
						}
					}
					if _, err := e.settle(e.store, id, session.SettleOptions{}); err != nil {
						b.Fatal(err)
					}
					e.remove(e.store, id, session.RemovedClosed)
				}
				b.ReportMetric(float64(e.cnt.Count()-requests)/float64(b.N), "requests/session")
			})
		}
	}
}
