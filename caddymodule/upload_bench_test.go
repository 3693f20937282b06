package caddymodule_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
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
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	exchange := func(head string, body []byte) *http.Response {
		b.Helper()
		if _, err := io.WriteString(conn, head); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write(body); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, error %s", resp.StatusCode, resp.Header.Get("BITS-Error-Code"))
		}
		return resp
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		path := fmt.Sprintf("/bench/%d/f%d.bin", i%16, i)
		resp := exchange(fmt.Sprintf("BITS_POST %s HTTP/1.1\r\nHost: %s\r\nBITS-Packet-Type: Create-Session\r\n"+
			"BITS-Supported-Protocols: {7df0354d-249b-430f-820d-3d2a9bef4931}\r\nContent-Length: 0\r\n\r\n", path, srv.Addr()), nil)
		id := resp.Header.Get("BITS-Session-Id")
		exchange(fmt.Sprintf("BITS_POST %s HTTP/1.1\r\nHost: %s\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: %s\r\n"+
			"Content-Range: bytes 0-%d/%d\r\nContent-Length: %d\r\n\r\n", path, srv.Addr(), id, len(data)-1, len(data), len(data)), data)
		exchange(fmt.Sprintf("BITS_POST %s HTTP/1.1\r\nHost: %s\r\nBITS-Packet-Type: Close-Session\r\nBITS-Session-Id: %s\r\n"+
			"Content-Length: 0\r\n\r\n", path, srv.Addr(), id), nil)
	}
	b.StopTimer()
	got, err := os.ReadFile(filepath.Join(srv.Root, "bench", "1", "f1.bin"))
	if err != nil || !bytes.Equal(got, data) {
		b.Fatalf("the first upload did not arrive whole: %d bytes, %v", len(got), err)
	}
}
