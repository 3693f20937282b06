package protocol

import (
	"net/http"
	"strings"
)

// Packet is a parsed BITS request.
type Packet struct {
	// Type is the packet type.
	Type PacketType
	// SessionID is the validated session id of Fragment, Close-Session and
	// Cancel-Session packets; empty for the others.
	SessionID SessionID
	// Protocols lists the protocols a Create-Session offers, canonical and
	// in the client's order of preference.
	Protocols []string
	// Range is the byte range of a Fragment.
	Range Range
	// ContentLength is the declared body length of a Fragment.
	ContentLength int64
}

// bitsRequestHeaders are the request headers whose values are bounded by
// MaxHeaderValueLength.
var bitsRequestHeaders = []string{
	HeaderPacketType, HeaderSupportedProtocols, HeaderSessionID, "Content-Range", "Content-Name",
}

// ParseRequest validates a BITS_POST request and returns its packet, or the
// *Error to answer it with. It reads no body. The method is not checked;
// callers dispatch on it first.
//
// Rules, per [MC-BUP] 2.2 and 3.2.5.2:
//   - BITS-Packet-Type must name a request packet (case-insensitively).
//   - BITS-* header values are at most MaxHeaderValueLength bytes.
//   - Ping, Create-Session, Close-Session and Cancel-Session carry no body:
//     a positive or unknown (chunked) Content-Length is refused.
//   - A Fragment must declare its length with Content-Length (no chunked
//     encoding), carry a valid Content-Range whose length equals it, and
//     use no Content-Encoding other than identity.
//
// Windows clients send Content-Length on every request, even when it is 0,
// and [MC-BUP] makes it mandatory. A request without it is still accepted
// when its body is empty by HTTP's own framing: proxies, Go's net/http
// among them, drop "Content-Length: 0" from requests with an extension
// method such as BITS_POST, and refusing those would break every deployment
// behind one. A body without a declared length (chunked) is always
// refused, and so is any Fragment whose Content-Range describes a length
// other than the body's.
//   - Fragment, Close-Session and Cancel-Session carry a braced-GUID
//     BITS-Session-Id. A malformed id is answered as an unknown session,
//     so the client starts over.
//
// A BITS header, Content-Range or Content-Name sent more than once is
// refused too, whatever the values: intermediaries that read the first and
// the last value would otherwise see different packets.
//
// Every violation is 400 with E_INVALIDARG except the malformed session id
// (500, BG_E_SESSION_NOT_FOUND). A missing length is 400 too, not the 411
// [MC-BUP] suggests: Windows servers answer 400, and clients treat both as
// fatal.
func ParseRequest(r *http.Request) (*Packet, *Error) {
	for _, name := range bitsRequestHeaders {
		if n := countHeader(r.Header, name); n > 1 {
			// A proxy in front that reads another of the values than
			// this server would disagree about the packet.
			return nil, BadRequest("%s header is sent %d times", name, n)
		}
		if v, _ := GetHeader(r.Header, name); len(v) > MaxHeaderValueLength {
			return nil, BadRequest("%s header is longer than %d bytes", name, MaxHeaderValueLength)
		}
	}
	raw, ok := GetHeader(r.Header, HeaderPacketType)
	if !ok {
		return nil, BadRequest("missing %s header", HeaderPacketType)
	}
	t, ok := ParsePacketType(raw)
	if !ok || t == PacketAck {
		return nil, BadRequest("unknown packet type %.40q", raw)
	}
	p := &Packet{Type: t}

	chunked := len(r.TransferEncoding) > 0
	if !t.HasBody() {
		if chunked || r.ContentLength != 0 {
			return nil, BadRequest("%s packet must not have a body", t)
		}
	} else {
		if chunked || r.ContentLength < 0 {
			return nil, BadRequest("fragment without Content-Length")
		}
		if _, present := GetHeader(r.Header, "Content-Length"); !present && r.ProtoMajor == 1 && r.ContentLength > 0 {
			return nil, BadRequest("fragment without Content-Length")
		}
		if enc, ok := GetHeader(r.Header, "Content-Encoding"); ok && !strings.EqualFold(trimOWS(enc), "identity") {
			return nil, BadRequest("fragment with Content-Encoding %.40q; only identity is accepted", enc)
		}
		cr, ok := GetHeader(r.Header, "Content-Range")
		if !ok {
			return nil, BadRequest("fragment without Content-Range")
		}
		rng, err := ParseContentRange(cr)
		if err != nil {
			return nil, BadRequest("%v", err)
		}
		if rng.Len() != r.ContentLength {
			return nil, BadRequest("fragment body is %d bytes but Content-Range %q describes %d", r.ContentLength, cr, rng.Len())
		}
		p.Range = rng
		p.ContentLength = r.ContentLength
	}

	if t == PacketCreateSession {
		v, ok := GetHeader(r.Header, HeaderSupportedProtocols)
		if !ok {
			return nil, BadRequest("create-session without %s", HeaderSupportedProtocols)
		}
		protos, err := ParseSupportedProtocols(v)
		if err != nil {
			return nil, BadRequest("%s: %v", HeaderSupportedProtocols, err)
		}
		p.Protocols = protos
	}
	if t.NeedsSession() {
		v, ok := GetHeader(r.Header, HeaderSessionID)
		if !ok {
			return nil, SessionNotFound("%s packet without %s", t, HeaderSessionID)
		}
		id, err := ParseSessionID(v)
		if err != nil {
			return nil, SessionNotFound("%s packet with malformed session id %.60q", t, v)
		}
		p.SessionID = id
	}
	return p, nil
}
