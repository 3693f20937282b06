package protocol

// PacketType is the value of the BITS-Packet-Type header.
type PacketType int

// Request packet types, and the one response type.
const (
	PacketUnknown PacketType = iota
	PacketPing
	PacketCreateSession
	PacketFragment
	PacketCloseSession
	PacketCancelSession
	PacketAck
)

var packetNames = [...]string{
	PacketUnknown:       "",
	PacketPing:          "Ping",
	PacketCreateSession: "Create-Session",
	PacketFragment:      "Fragment",
	PacketCloseSession:  "Close-Session",
	PacketCancelSession: "Cancel-Session",
	PacketAck:           "Ack",
}

// String returns the packet type as Windows clients spell it, e.g.
// "Create-Session", or "" for PacketUnknown.
func (t PacketType) String() string {
	if t < 0 || int(t) >= len(packetNames) {
		return ""
	}
	return packetNames[t]
}

// ParsePacketType parses a BITS-Packet-Type value. The comparison is case
// insensitive: [MC-BUP] writes "CREATE-SESSION" while clients send
// "Create-Session". Only ASCII letters fold (no Unicode look-alikes), and
// only the spaces and tabs HTTP allows around a value are ignored. It returns
// PacketUnknown and false for anything else.
func ParsePacketType(s string) (PacketType, bool) {
	s = trimOWS(s)
	for t := PacketPing; t <= PacketAck; t++ {
		if equalFoldASCII(s, packetNames[t]) {
			return t, true
		}
	}
	return PacketUnknown, false
}

// HasBody reports whether packets of this type carry a request body.
// Only fragments do; every other packet must have an empty body.
func (t PacketType) HasBody() bool { return t == PacketFragment }

// NeedsSession reports whether packets of this type must carry
// BITS-Session-Id.
func (t PacketType) NeedsSession() bool {
	return t == PacketFragment || t == PacketCloseSession || t == PacketCancelSession
}

// equalFoldASCII compares two strings, folding only ASCII letters.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
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
