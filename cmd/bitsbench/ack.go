package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ack is the part of an HTTP/1.1 response to a BITS packet that the load
// generator needs. Its byte slices are reused from one response to the
// next, so that reading an Ack allocates nothing once they have grown.
type ack struct {
	// status is the HTTP status code.
	status int
	// isAck reports that BITS-Packet-Type is Ack.
	isAck bool
	// sessionID is BITS-Session-Id, or empty.
	sessionID []byte
	// received is BITS-Received-Content-Range, or -1 when absent.
	received int64
	// contentLength is Content-Length.
	contentLength int64
	// errorCode is BITS-Error-Code, or empty.
	errorCode []byte
	// close reports that the server closes the connection after this
	// response.
	close bool
}

// maxAckBody bounds the body of a response that the generator reads and
// discards. Acks have an empty body; error responses may carry a short
// text.
const maxAckBody = 1 << 20

var errMalformed = errors.New("malformed response")

// readAck reads one response from br into a, skipping interim (1xx)
// responses, and discards its body. It checks the framing strictly:
// a status line of HTTP/1.x, well-formed header lines, and exactly one
// Content-Length, which every BITS Ack must carry. It does not judge the
// status or the BITS headers; the caller does.
func readAck(br *bufio.Reader, a *ack) error {
	for {
		if err := readHead(br, a); err != nil {
			return err
		}
		if a.status >= 200 {
			break
		}
		if a.status == 101 {
			return fmt.Errorf("%w: unexpected 101 Switching Protocols", errMalformed)
		}
	}
	if a.contentLength < 0 {
		return fmt.Errorf("%w: no Content-Length", errMalformed)
	}
	if a.contentLength > maxAckBody {
		return fmt.Errorf("%w: body of %d bytes", errMalformed, a.contentLength)
	}
	if a.contentLength > 0 {
		if _, err := br.Discard(int(a.contentLength)); err != nil {
			return fmt.Errorf("reading response body: %w", unexpectedEOF(err))
		}
	}
	return nil
}

// readHead reads a status line and the header lines after it.
func readHead(br *bufio.Reader, a *ack) error {
	a.status, a.isAck, a.received, a.contentLength, a.close = 0, false, -1, -1, false
	a.sessionID, a.errorCode = a.sessionID[:0], a.errorCode[:0]

	line, err := readLine(br)
	if err != nil {
		return fmt.Errorf("reading status line: %w", err)
	}
	// HTTP/1.1 200 OK (the reason phrase may be empty or absent).
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) ||
		(line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: status line %q", errMalformed, line)
		}
		a.status = a.status*10 + int(c-'0')
	}
	if a.status < 100 {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	http10 := line[7] == '0'
	keepAlive := false

	for {
		line, err := readLine(br)
		if err != nil {
			return fmt.Errorf("reading header: %w", err)
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		for _, c := range name {
			if c <= ' ' || c >= 0x7f {
				return fmt.Errorf("%w: header name %q", errMalformed, name)
			}
		}
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseDecimal(value)
			if !ok || (a.contentLength >= 0 && a.contentLength != n) {
				return fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			a.contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			return fmt.Errorf("%w: Transfer-Encoding %q on an Ack", errMalformed, value)
		case equalFold(name, "Connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				if equalFold(tok, "close") {
					a.close = true
				} else if equalFold(tok, "keep-alive") {
					keepAlive = true
				}
			}
		case equalFold(name, "BITS-Packet-Type"):
			a.isAck = equalFold(value, "Ack")
		case equalFold(name, "BITS-Session-Id"):
			a.sessionID = append(a.sessionID[:0], value...)
		case equalFold(name, "BITS-Received-Content-Range"):
			n, ok := parseDecimal(value)
			if !ok {
				return fmt.Errorf("%w: BITS-Received-Content-Range %q", errMalformed, value)
			}
			a.received = n
		case equalFold(name, "BITS-Error-Code"):
			a.errorCode = append(a.errorCode[:0], value...)
		}
	}
	if http10 && !keepAlive {
		a.close = true
	}
	return nil
}

// readLine returns the next line without its line ending. The line is
// valid until the next read from br.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errMalformed, br.Size())
		}
		return nil, unexpectedEOF(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseDecimal parses a non-negative decimal integer of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// equalFold reports whether b equals the ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
