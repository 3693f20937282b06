package protocol

import (
	"fmt"
	"strings"
	"testing"
)

// TestParsePacketType checks every packet type in the casings seen in the
// wild (clients send "Create-Session", MC-BUP writes "CREATE-SESSION").
func TestParsePacketType(t *testing.T) {
	tests := []struct {
		in   string
		want PacketType
	}{
		{"Ping", PacketPing},
		{"ping", PacketPing},
		{"PING", PacketPing},
		{"pInG", PacketPing},
		{" Ping ", PacketPing},
		{"\tPing\t", PacketPing},
		{"Create-Session", PacketCreateSession},
		{"create-session", PacketCreateSession},
		{"CREATE-SESSION", PacketCreateSession},
		{"Fragment", PacketFragment},
		{"fragment", PacketFragment},
		{"FRAGMENT", PacketFragment},
		{"Close-Session", PacketCloseSession},
		{"close-session", PacketCloseSession},
		{"CLOSE-SESSION", PacketCloseSession},
		{"Cancel-Session", PacketCancelSession},
		{"cancel-session", PacketCancelSession},
		{"CANCEL-SESSION", PacketCancelSession},
		{"Ack", PacketAck},
		{"ACK", PacketAck},
		{"ack", PacketAck},
	}
	for _, tc := range tests {
		got, ok := ParsePacketType(tc.in)
		if !ok || got != tc.want {
			t.Errorf("ParsePacketType(%q) = %v, %v; want %v, true", tc.in, got, ok, tc.want)
		}
	}
}

// TestParsePacketTypeUnknown checks that other values are refused with
// PacketUnknown.
func TestParsePacketTypeUnknown(t *testing.T) {
	for _, in := range []string{
		"",
		" ",
		"Pings",
		"Pin",
		"CreateSession",
		"Create Session",
		"Create_Session",
		"Create-Session-",
		"-Create-Session",
		"Session",
		"Upload",
		"Ping,Fragment",
		"Ping Fragment",
		"Ping\x00",
		"Unknown",
		"0",
		"1",
	} {
		got, ok := ParsePacketType(in)
		if ok || got != PacketUnknown {
			t.Errorf("ParsePacketType(%q) = %v, %v; want PacketUnknown, false", in, got, ok)
		}
	}
}

// TestParsePacketTypeASCIIOnly documents that packet types are ASCII tokens
// (RFC 9110): only ASCII letters compare case-insensitively, and only spaces
// and tabs (OWS) are trimmed.
func TestParsePacketTypeASCIIOnly(t *testing.T) {
	var accepted []string
	for _, in := range []string{
		"Create-Seſſion", // U+017F LATIN SMALL LETTER LONG S folds to "s".
		"CLOSE-SEſſION",
		"Ping\u00a0",     // NO-BREAK SPACE is not OWS.
		"\u2003Fragment", // EM SPACE is not OWS.
	} {
		if got, ok := ParsePacketType(in); ok || got != PacketUnknown {
			accepted = append(accepted, fmt.Sprintf("%+q -> %v", in, got))
		}
	}
	if len(accepted) > 0 {
		t.Fatalf("ParsePacketType uses Unicode case folding (strings.EqualFold) and Unicode "+
			"whitespace trimming (strings.TrimSpace), so non-ASCII look-alikes are accepted: %s",
			strings.Join(accepted, ", "))
	}
}

// TestPacketTypeString checks the wire spelling of every type.
func TestPacketTypeString(t *testing.T) {
	tests := []struct {
		t    PacketType
		want string
	}{
		{PacketUnknown, ""},
		{PacketPing, "Ping"},
		{PacketCreateSession, "Create-Session"},
		{PacketFragment, "Fragment"},
		{PacketCloseSession, "Close-Session"},
		{PacketCancelSession, "Cancel-Session"},
		{PacketAck, "Ack"},
		{PacketType(-1), ""},
		{PacketType(7), ""},
		{PacketType(1 << 30), ""},
	}
	for _, tc := range tests {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("PacketType(%d).String() = %q, want %q", int(tc.t), got, tc.want)
		}
	}
}

// TestPacketTypeStringRoundTrip checks that every named type parses back
// from its own String.
func TestPacketTypeStringRoundTrip(t *testing.T) {
	for pt := PacketPing; pt <= PacketAck; pt++ {
		got, ok := ParsePacketType(pt.String())
		if !ok || got != pt {
			t.Errorf("ParsePacketType(%q) = %v, %v; want %v, true", pt.String(), got, ok, pt)
		}
	}
}

// TestPacketTypeHasBody checks that only fragments carry a body.
func TestPacketTypeHasBody(t *testing.T) {
	want := map[PacketType]bool{
		PacketUnknown:       false,
		PacketPing:          false,
		PacketCreateSession: false,
		PacketFragment:      true,
		PacketCloseSession:  false,
		PacketCancelSession: false,
		PacketAck:           false,
	}
	for pt, w := range want {
		if got := pt.HasBody(); got != w {
			t.Errorf("%q.HasBody() = %v, want %v", pt.String(), got, w)
		}
	}
}

// TestPacketTypeNeedsSession checks that Fragment, Close-Session and
// Cancel-Session need a session id and the others do not.
func TestPacketTypeNeedsSession(t *testing.T) {
	want := map[PacketType]bool{
		PacketUnknown:       false,
		PacketPing:          false,
		PacketCreateSession: false,
		PacketFragment:      true,
		PacketCloseSession:  true,
		PacketCancelSession: true,
		PacketAck:           false,
	}
	for pt, w := range want {
		if got := pt.NeedsSession(); got != w {
			t.Errorf("%q.NeedsSession() = %v, want %v", pt.String(), got, w)
		}
	}
}
