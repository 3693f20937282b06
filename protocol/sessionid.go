package protocol

import "errors"

// SessionID is a canonical BITS session id: a GUID in braces, in lower
// case, e.g. "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}". Only [ParseSessionID]
// and [NewSessionID] make one, so a SessionID value is always safe to use
// as a file name.
type SessionID string

// ErrMalformedSessionID is returned for a session id that is not a braced
// GUID.
var ErrMalformedSessionID = errors.New("malformed session id: want a braced GUID")

// ParseSessionID validates a BITS-Session-Id value and returns its
// canonical form. The value must be exactly a braced GUID
// ("{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}", hex digits in either case,
// nothing before or after); surrounding whitespace is ignored.
func ParseSessionID(s string) (SessionID, error) {
	s = trimOWS(s)
	if len(s) != 38 || s[0] != '{' || s[37] != '}' {
		return "", ErrMalformedSessionID
	}
	g, ok := canonicalGUID(s[1:37])
	if !ok {
		return "", ErrMalformedSessionID
	}
	return SessionID("{" + g + "}"), nil
}

// NewSessionID formats 16 random bytes, such as a version 4 UUID, as a
// session id, setting the version 4 and variant bits. The caller supplies
// the randomness so this package stays pure.
func NewSessionID(b [16]byte) SessionID {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 38)
	out = append(out, '{')
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	out = append(out, '}')
	return SessionID(out)
}

// Bytes returns the 16 bytes of the GUID, the inverse of NewSessionID
// (with the version and variant bits as they are).
func (id SessionID) Bytes() [16]byte {
	var b [16]byte
	i := 0
	for j := 1; j+1 < len(id) && i < 16; j++ {
		if id[j] == '-' {
			continue
		}
		b[i] = unhex(id[j])<<4 | unhex(id[j+1])
		i++
		j++
	}
	return b
}

// unhex returns the value of a lower-case hex digit.
func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// String returns the canonical (lower-case, braced) form.
func (id SessionID) String() string { return string(id) }

// Wire returns the id as it is sent in BITS-Session-Id: braced and upper
// case, the way IIS writes it.
func (id SessionID) Wire() string {
	b := []byte(id)
	for i, c := range b {
		if 'a' <= c && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// Bare returns the GUID without braces, the form used for file names.
func (id SessionID) Bare() string {
	if len(id) != 38 {
		return ""
	}
	return string(id[1:37])
}

// canonicalGUID validates a bare 36-character GUID and lower-cases it.
func canonicalGUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	b := []byte(s)
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
			continue
		}
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			b[i] = c - 'A' + 'a'
		default:
			return "", false
		}
	}
	return string(b), true
}

// trimOWS removes the optional whitespace (spaces and tabs) HTTP allows
// around a header value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
