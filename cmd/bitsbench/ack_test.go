package main

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadAck(t *testing.T) {
	tests := []struct {
		name, in  string
		status    int
		isAck     bool
		sessionID string
		received  int64
		errorCode string
		close     bool
		rest      string // what is left to read after the response
	}{
		{
			name: "create-session",
			in: "HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nBITS-Protocol: {7df0354d-249b-430f-820d-3d2a9bef4931}\r\n" +
				"BITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}\r\nContent-Length: 0\r\n\r\nnext",
			status: 200, isAck: true, sessionID: "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}", received: -1, rest: "next",
		},
		{
			name:   "fragment, canonical names, no reason phrase",
			in:     "HTTP/1.1 200\r\nBits-Packet-Type: ack\r\nBits-Received-Content-Range: 65536\r\nContent-Length:0\r\n\r\n",
			status: 200, isAck: true, received: 65536,
		},
		{
			name:   "error with a body and a bare LF",
			in:     "HTTP/1.1 500 Internal Server Error\nBITS-Packet-Type: Ack\nBITS-Error-Code: 0x8020001F\nContent-Length: 5\n\nerror!",
			status: 500, isAck: true, received: -1, errorCode: "0x8020001F", rest: "!",
		},
		{
			name:   "416 with the offset",
			in:     "HTTP/1.1 416 Requested Range Not Satisfiable\r\nBITS-Packet-Type: Ack\r\nBITS-Received-Content-Range: 0\r\nContent-Length: 0\r\n\r\n",
			status: 416, isAck: true, received: 0,
		},
		{
			name:   "interim response skipped, connection closed",
			in:     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
			status: 200, received: -1, close: true,
		},
		{
			name:   "HTTP/1.0 closes",
			in:     "HTTP/1.0 200 OK\r\nBITS-Packet-Type: Ack\r\nContent-Length: 0\r\n\r\n",
			status: 200, isAck: true, received: -1, close: true,
		},
		{
			name:   "not an Ack",
			in:     "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found",
			status: 404, received: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.in))
			var a ack
			if err := readAck(br, &a); err != nil {
				t.Fatalf("readAck: %v", err)
			}
			if a.status != tt.status || a.isAck != tt.isAck || string(a.sessionID) != tt.sessionID ||
				a.received != tt.received || string(a.errorCode) != tt.errorCode || a.close != tt.close {
				t.Errorf("got status %d, ack %v, session %q, received %d, error %q, close %v",
					a.status, a.isAck, a.sessionID, a.received, a.errorCode, a.close)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("left %q, want %q", rest, tt.rest)
			}
		})
	}
}

func TestReadAckMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",                            // no end of head
		"HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\n\r\n",                    // no Content-Length
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",                  // body cut short
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",                       // bad length
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", // conflicting
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBITS-Received-Content-Range: 12x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded: x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/2 200\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n", // more body than an Ack has
		"HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("x", 5000) + "\r\nContent-Length: 0\r\n\r\n",
	} {
		var a ack
		err := readAck(bufio.NewReaderSize(strings.NewReader(in), 4096), &a)
		if !errors.Is(err, errMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("readAck(%q) = %v, want a malformed response or an unexpected EOF", in, err)
		}
	}
}

func TestReadAckAllocs(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nBITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}\r\n" +
		"BITS-Received-Content-Range: 65536\r\nContent-Length: 0\r\n\r\n"
	sr := strings.NewReader(resp)
	br := bufio.NewReader(sr)
	var a ack
	n := testing.AllocsPerRun(100, func() {
		sr.Reset(resp)
		br.Reset(sr)
		if err := readAck(br, &a); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("readAck allocates %v times per response, want 0", n)
	}
}
