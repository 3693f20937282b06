package protocol

import (
	"errors"
	"strings"
	"testing"
)

// TestParseSessionIDValid checks that braced GUIDs in any case, with
// optional surrounding whitespace, parse to the lower-case braced form.
func TestParseSessionIDValid(t *testing.T) {
	const canon = "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}"
	tests := []struct {
		name string
		in   string
		want SessionID
	}{
		{"upper case as IIS sends it", "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}", canon},
		{"lower case", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}", canon},
		{"mixed case", "{A0fF5911-4144-45b3-Bf27-27aFc8eC8a67}", canon},
		{"leading space", " {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}", canon},
		{"trailing space", "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67} ", canon},
		{"surrounding spaces", "   {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}   ", canon},
		{"surrounding tabs", "\t{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}\t", canon},
		{"spaces and tabs", " \t {a0ff5911-4144-45b3-bf27-27afc8ec8a67}\t ", canon},
		{"all zero", "{00000000-0000-0000-0000-000000000000}", "{00000000-0000-0000-0000-000000000000}"},
		{"all f upper", "{FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF}", "{ffffffff-ffff-ffff-ffff-ffffffffffff}"},
		{"every hex digit", "{01234567-89AB-CDEF-0123-456789abcdef}", "{01234567-89ab-cdef-0123-456789abcdef}"},
		{"upload protocol GUID", "{7DF0354D-249B-430F-820D-3D2A9BEF4931}", UploadProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSessionID(tc.in)
			if err != nil {
				t.Fatalf("ParseSessionID(%q) error = %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParseSessionID(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got.String() != string(tc.want) {
				t.Fatalf("String() = %q, want %q", got.String(), tc.want)
			}
		})
	}
}

// TestParseSessionIDInvalid checks that anything other than exactly one
// braced GUID is refused with ErrMalformedSessionID.
func TestParseSessionIDInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"whitespace only", " \t "},
		{"bare GUID", "a0ff5911-4144-45b3-bf27-27afc8ec8a67"},
		{"bare GUID padded to 38", " a0ff5911-4144-45b3-bf27-27afc8ec8a67 x"},
		{"opening brace only", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67"},
		{"closing brace only", "a0ff5911-4144-45b3-bf27-27afc8ec8a67}"},
		{"parentheses", "(a0ff5911-4144-45b3-bf27-27afc8ec8a67)"},
		{"reversed braces", "}a0ff5911-4144-45b3-bf27-27afc8ec8a67{"},
		{"square brackets", "[a0ff5911-4144-45b3-bf27-27afc8ec8a67]"},
		{"char before", "x{a0ff5911-4144-45b3-bf27-27afc8ec8a67}"},
		{"char after", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}x"},
		{"two ids", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}{a0ff5911-4144-45b3-bf27-27afc8ec8a67}"},
		{"comma separated", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67},"},
		{"inner space", "{ a0ff5911-4144-45b3-bf27-27afc8ec8a6}"},
		{"newline around", "\n{a0ff5911-4144-45b3-bf27-27afc8ec8a67}\n"},
		{"dash moved left", "{a0ff591-14144-45b3-bf27-27afc8ec8a67}"},
		{"dash moved right", "{a0ff5911-41444-5b3-bf27-27afc8ec8a67}"},
		{"dashes shifted in the middle", "{a0ff5911-4144-45b3b-f27-27afc8ec8a67}"},
		{"last dash shifted", "{a0ff5911-4144-45b3-bf272-7afc8ec8a67}"},
		{"no dashes, 38 long", "{a0ff59114144x45b3xbf27x27afc8ec8a67}"},
		{"dash replaced by underscore", "{a0ff5911_4144-45b3-bf27-27afc8ec8a67}"},
		{"extra dash for hex digit", "{a0ff5911-4144-45b3-bf27--7afc8ec8a67}"},
		{"non-hex g", "{g0ff5911-4144-45b3-bf27-27afc8ec8a67}"},
		{"non-hex G", "{a0ff5911-4144-45b3-bf27-27afc8ec8a6G}"},
		{"non-hex z", "{a0ff5911-4144-45b3-bf27-27afc8ezza67}"},
		{"37 chars", "{a0ff5911-4144-45b3-bf27-27afc8ec8a6}"},
		{"39 chars", "{a0ff5911-4144-45b3-bf27-27afc8ec8a670}"},
		{"path traversal", "{../../etc/passwd-aaaa-bbbb-cccccccc}"},
		{"path traversal, 37 bytes", "{../../etc/passwd/../../../etc/passw}"},
		{"path traversal, 38 bytes with dashes in place", "{../../..-../.-./..-/etc-/passwd.bin.}"},
		{"backslashes", "{..\\..\\windows\\win.ini-aaaa-bbbbbbb}"},
		{"NUL byte", "{a0ff5911-4144-45b3-bf27-27afc8ec8a6\x00}"},
		{"unicode digit", "{a0ff5911-4144-45b3-bf27-27afc8ec8a٦}"},
		{"unicode full-width", "{ａ0ff5911-4144-45b3-bf27-27afc8ec8a}"},
		{"unicode, 38 runes", "{äöüäöüäö-äöüä-äöüä-äöüä-äöüäöüäöüäö}"},
		{"non-breaking space around", "\u00a0{a0ff5911-4144-45b3-bf27-27afc8ec8a67}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSessionID(tc.in)
			if err == nil {
				t.Fatalf("ParseSessionID(%q) = %q, want an error", tc.in, got)
			}
			if !errors.Is(err, ErrMalformedSessionID) {
				t.Fatalf("ParseSessionID(%q) error = %v, want ErrMalformedSessionID", tc.in, err)
			}
			if got != "" {
				t.Fatalf("ParseSessionID(%q) returned %q with its error, want empty", tc.in, got)
			}
		})
	}
}

// TestNewSessionIDFormat checks the version and variant bits, the layout,
// and the round trip through ParseSessionID, for several byte patterns.
func TestNewSessionIDFormat(t *testing.T) {
	var inputs [][16]byte
	inputs = append(inputs, [16]byte{}) // All zero.
	var ones [16]byte
	for i := range ones {
		ones[i] = 0xff
	}
	inputs = append(inputs, ones)
	var seq [16]byte
	for i := range seq {
		seq[i] = byte(i*17 + 3)
	}
	inputs = append(inputs, seq)

	for _, b := range inputs {
		id := NewSessionID(b)
		s := string(id)
		if len(s) != 38 || s[0] != '{' || s[37] != '}' {
			t.Fatalf("NewSessionID(%x) = %q, want a 38-byte braced GUID", b, s)
		}
		for _, i := range []int{9, 14, 19, 24} {
			if s[i] != '-' {
				t.Fatalf("NewSessionID(%x) = %q, want '-' at index %d", b, s, i)
			}
		}
		if s[15] != '4' {
			t.Errorf("NewSessionID(%x) = %q, version nibble %q, want '4'", b, s, s[15])
		}
		if !strings.ContainsRune("89ab", rune(s[20])) {
			t.Errorf("NewSessionID(%x) = %q, variant nibble %q, want one of 8, 9, a, b", b, s, s[20])
		}
		if s != strings.ToLower(s) {
			t.Errorf("NewSessionID(%x) = %q, want lower case", b, s)
		}
		back, err := ParseSessionID(s)
		if err != nil || back != id {
			t.Errorf("ParseSessionID(%q) = %q, %v; want %q, nil", s, back, err, id)
		}
		wire := id.Wire()
		if wire != strings.ToUpper(s) {
			t.Errorf("Wire() = %q, want %q", wire, strings.ToUpper(s))
		}
		if back, err := ParseSessionID(wire); err != nil || back != id {
			t.Errorf("ParseSessionID(Wire()) = %q, %v; want %q, nil", back, err, id)
		}
		if bare := id.Bare(); len(bare) != 36 || bare != s[1:37] {
			t.Errorf("Bare() = %q, want %q", bare, s[1:37])
		}
	}
}

// TestNewSessionIDExact checks the exact text for known bytes, so the byte
// order and the bit masks are pinned down.
func TestNewSessionIDExact(t *testing.T) {
	tests := []struct {
		in   [16]byte
		want SessionID
	}{
		{[16]byte{}, "{00000000-0000-4000-8000-000000000000}"},
		{
			[16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			"{ffffffff-ffff-4fff-bfff-ffffffffffff}",
		},
		{
			[16]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef},
			"{01234567-89ab-4def-8123-456789abcdef}",
		},
	}
	for _, tc := range tests {
		if got := NewSessionID(tc.in); got != tc.want {
			t.Errorf("NewSessionID(%x) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNewSessionIDDistinct checks that different random bytes give
// different ids (outside the six fixed version and variant bits).
func TestNewSessionIDDistinct(t *testing.T) {
	seen := map[SessionID]int{}
	for i := 0; i < 256; i++ {
		var b [16]byte
		b[15] = byte(i)
		id := NewSessionID(b)
		if j, dup := seen[id]; dup {
			t.Fatalf("NewSessionID gave %q for inputs %d and %d", id, j, i)
		}
		seen[id] = i
	}
}

// TestSessionIDWire checks the upper-case wire form, the form IIS sends.
func TestSessionIDWire(t *testing.T) {
	id, err := ParseSessionID("{a0ff5911-4144-45b3-bf27-27afc8ec8a67}")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.Wire(), "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}"; got != want {
		t.Fatalf("Wire() = %q, want %q", got, want)
	}
	if got, want := id.Bare(), "a0ff5911-4144-45b3-bf27-27afc8ec8a67"; got != want {
		t.Fatalf("Bare() = %q, want %q", got, want)
	}
	if got := SessionID("").Bare(); got != "" {
		t.Fatalf(`SessionID("").Bare() = %q, want ""`, got)
	}
	if got := SessionID("").Wire(); got != "" {
		t.Fatalf(`SessionID("").Wire() = %q, want ""`, got)
	}
}

// TestSessionIDBytes checks that Bytes inverts NewSessionID.
func TestSessionIDBytes(t *testing.T) {
	for _, b := range [][16]byte{
		{},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0xa0, 0xff, 0x59, 0x11, 0x41, 0x44, 0x45, 0xb3, 0xbf, 0x27, 0x27, 0xaf, 0xc8, 0xec, 0x8a, 0x67},
	} {
		id := NewSessionID(b)
		want := b
		want[6] = want[6]&0x0f | 0x40
		want[8] = want[8]&0x3f | 0x80
		if got := id.Bytes(); got != want {
			t.Errorf("NewSessionID(%x).Bytes() = %x, want %x", b, got, want)
		}
		parsed, err := ParseSessionID(id.Wire())
		if err != nil || parsed.Bytes() != want {
			t.Errorf("ParseSessionID(%s).Bytes() = %x, %v; want %x", id.Wire(), parsed.Bytes(), err, want)
		}
	}
}
