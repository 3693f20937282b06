package caddymodule_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// BenchmarkSmallUpload measures one 64 KiB upload through the in-process
// Caddy (Create-Session, one Fragment with the whole file, Close-Session)
// on one kept-alive connection, and counts the allocations of the whole
// process per upload, most of them the server's. It shows the cost per
// request of the handler without the load generator and the scheduling
// noise of bench/run.sh. Run it with
//
//	go test -run '^$' -bench SmallUpload -benchmem ./caddymodule
//
// Each upload fsyncs into a temporary directory, so ns/op follows that
// file system; allocs/op does not.
func BenchmarkSmallUpload(b *testing.B) {
	srv := newServer(b, "")
	data := testutil.RandomBytes(1, 64<<10)
	c := dialWholeBody(b, srv.Addr())
	send := func(path string, headers map[string]string, body []byte) *http.Response {
		b.Helper()
		resp := c.roundTrip(path, headers, body)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, error %s", resp.StatusCode, resp.Header.Get(protocol.HeaderErrorCode))
		}
		return resp
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		path := fmt.Sprintf("/bench/%d/f%d.bin", i%16, i)
		id := send(path, map[string]string{
			protocol.HeaderPacketType:         "Create-Session",
			protocol.HeaderSupportedProtocols: protocol.UploadProtocol,
		}, nil).Header.Get(protocol.HeaderSessionID)
		send(path, map[string]string{
			protocol.HeaderPacketType: "Fragment",
			protocol.HeaderSessionID:  id,
			"Content-Range":           fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)),
		}, data)
		send(path, map[string]string{protocol.HeaderPacketType: "Close-Session", protocol.HeaderSessionID: id}, nil)
	}
	b.StopTimer()
	got, err := os.ReadFile(filepath.Join(srv.Root, "bench", "1", "f1.bin"))
	if err != nil || !bytes.Equal(got, data) {
		b.Fatalf("the first upload did not arrive whole: %d bytes, %v", len(got), err)
	}
}
