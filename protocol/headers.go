package protocol

import "net/textproto"

// Header names of the BITS upload protocol, spelled exactly as Windows
// clients and IIS spell them on the wire. HTTP header names are case
// insensitive, but some clients and intermediaries are not, so responses
// always use these spellings (see [SetHeader]).
const (
	HeaderPacketType            = "BITS-Packet-Type"
	HeaderSupportedProtocols    = "BITS-Supported-Protocols"
	HeaderProtocol              = "BITS-Protocol"
	HeaderSessionID             = "BITS-Session-Id"
	HeaderReceivedContentRange  = "BITS-Received-Content-Range"
	HeaderReplyURL              = "BITS-Reply-URL"
	HeaderHostID                = "BITS-Host-Id"
	HeaderHostIDFallbackTimeout = "BITS-Host-Id-Fallback-Timeout"
	HeaderErrorCode             = "BITS-Error-Code"
	HeaderErrorContext          = "BITS-Error-Context"

	// Headers of the server-application notification exchange.
	HeaderOriginalRequestURL   = "BITS-Original-Request-URL"
	HeaderRequestDataFileName  = "BITS-Request-DataFile-Name"
	HeaderResponseDataFileName = "BITS-Response-DataFile-Name"
	HeaderCopyFileToDest       = "BITS-Copy-File-To-Destination"
	HeaderStaticResponseURL    = "BITS-Static-Response-URL"
)

// MaxHeaderValueLength is the longest value of a BITS-* request header the
// server accepts. Windows servers reject longer values with 400 and
// E_INVALIDARG ([MC-BUP] 2.2.1).
const MaxHeaderValueLength = 4096

// Method is the HTTP method of every BITS upload request.
const Method = "BITS_POST"

// canonicalNames maps each BITS header name to its canonical form, so
// that reading and writing headers does not canonicalize (and allocate)
// on every request.
var canonicalNames = func() map[string]string {
	m := make(map[string]string)
	for _, name := range []string{
		HeaderPacketType, HeaderSupportedProtocols, HeaderProtocol, HeaderSessionID,
		HeaderReceivedContentRange, HeaderReplyURL, HeaderHostID, HeaderHostIDFallbackTimeout,
		HeaderErrorCode, HeaderErrorContext, HeaderOriginalRequestURL, HeaderRequestDataFileName,
		HeaderResponseDataFileName, HeaderCopyFileToDest, HeaderStaticResponseURL,
	} {
		m[name] = textproto.CanonicalMIMEHeaderKey(name)
	}
	return m
}()

// canonical returns the canonical form of a header name.
func canonical(name string) string {
	if c, ok := canonicalNames[name]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// SetHeader sets a response header under exactly the given name, bypassing
// the canonicalization of [net/http.Header.Set] (which would turn
// "BITS-Packet-Type" into "Bits-Packet-Type" on HTTP/1.1).
// Any value stored under the canonical form of the name is dropped, so the
// header is never sent twice.
func SetHeader(h map[string][]string, name, value string) {
	if c := canonical(name); c != name {
		delete(h, c)
	}
	h[name] = []string{value}
}

// GetHeader returns the first value of a request header, whatever the
// spelling of its name: parsed requests carry canonical names, while
// hand-built header maps may carry the exact BITS spelling.
func GetHeader(h map[string][]string, name string) (string, bool) {
	if v, ok := h[canonical(name)]; ok && len(v) > 0 {
		return v[0], true
	}
	if v, ok := h[name]; ok && len(v) > 0 {
		return v[0], true
	}
	return "", false
}

// countHeader returns how many values a request header has, under the
// name GetHeader reads it from.
func countHeader(h map[string][]string, name string) int {
	if v, ok := h[canonical(name)]; ok && len(v) > 0 {
		return len(v)
	}
	return len(h[name])
}
