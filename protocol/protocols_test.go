package protocol

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// otherProtocol is a valid braced GUID that is not the upload protocol.
const otherProtocol = "{11111111-2222-3333-4444-555555555555}"

// TestParseSupportedProtocolsValid checks every separator style and the
// canonical lower-case output, in the client's order.
func TestParseSupportedProtocolsValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"exact Windows value", "{7df0354d-249b-430f-820d-3d2a9bef4931}", []string{UploadProtocol}},
		{"upper case", "{7DF0354D-249B-430F-820D-3D2A9BEF4931}", []string{UploadProtocol}},
		{"mixed case", "{7Df0354D-249b-430F-820d-3D2a9bEf4931}", []string{UploadProtocol}},
		{"surrounding whitespace", " \t{7df0354d-249b-430f-820d-3d2a9bef4931}\t ", []string{UploadProtocol}},
		{"space separated", otherProtocol + " " + UploadProtocol, []string{otherProtocol, UploadProtocol}},
		{"comma separated", otherProtocol + "," + UploadProtocol, []string{otherProtocol, UploadProtocol}},
		{"comma and space", otherProtocol + ", " + UploadProtocol, []string{otherProtocol, UploadProtocol}},
		{"space and comma", otherProtocol + " ," + UploadProtocol, []string{otherProtocol, UploadProtocol}},
		{"tab separated", otherProtocol + "\t" + UploadProtocol, []string{otherProtocol, UploadProtocol}},
		{"many separators", ",, \t" + otherProtocol + " ,\t, " + UploadProtocol + " ,", []string{otherProtocol, UploadProtocol}},
		{"upload protocol first", UploadProtocol + " " + otherProtocol, []string{UploadProtocol, otherProtocol}},
		{"duplicates kept", UploadProtocol + " " + strings.ToUpper(UploadProtocol), []string{UploadProtocol, UploadProtocol}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSupportedProtocols(tc.in)
			if err != nil {
				t.Fatalf("ParseSupportedProtocols(%q) error = %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseSupportedProtocols(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// protocolList returns n distinct braced GUIDs joined by sep, in upper case
// so that the canonicalisation is exercised, and their canonical forms.
func protocolList(n int, sep string) (string, []string) {
	raw := make([]string, n)
	canon := make([]string, n)
	for i := range raw {
		g := fmt.Sprintf("{%08x-0000-4000-8000-%012x}", i, i*7919)
		canon[i] = g
		raw[i] = strings.ToUpper(g)
	}
	return strings.Join(raw, sep), canon
}

// TestParseSupportedProtocolsLimit checks that exactly MaxSupportedProtocols
// entries are accepted and one more is refused.
func TestParseSupportedProtocolsLimit(t *testing.T) {
	if MaxSupportedProtocols != 100 {
		t.Fatalf("MaxSupportedProtocols = %d, want 100 (MC-BUP note 6)", MaxSupportedProtocols)
	}
	for _, sep := range []string{" ", ",", ", "} {
		in, want := protocolList(100, sep)
		got, err := ParseSupportedProtocols(in)
		if err != nil {
			t.Fatalf("100 entries separated by %q: error = %v", sep, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("100 entries separated by %q: got %d entries, want %d in order", sep, len(got), len(want))
		}

		in, _ = protocolList(101, sep)
		if got, err := ParseSupportedProtocols(in); err == nil {
			t.Fatalf("101 entries separated by %q: got %d entries, want an error", sep, len(got))
		} else if got != nil {
			t.Fatalf("101 entries separated by %q: returned %d entries with the error, want nil", sep, len(got))
		}
	}
}

// TestParseSupportedProtocolsInvalid checks that empty lists and lists with
// any entry that is not a braced GUID are refused.
func TestParseSupportedProtocolsInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"space only", " "},
		{"whitespace only", " \t  \t"},
		{"commas only", ",,,"},
		{"separators only", " , \t ,"},
		{"bare GUID", "7df0354d-249b-430f-820d-3d2a9bef4931"},
		{"non-GUID word", "BITS"},
		{"valid then garbage", UploadProtocol + " garbage"},
		{"garbage then valid", "garbage," + UploadProtocol},
		{"semicolon separator", otherProtocol + ";" + UploadProtocol},
		{"missing closing brace", "{7df0354d-249b-430f-820d-3d2a9bef4931"},
		{"two ids without separator", UploadProtocol + otherProtocol},
		{"inner space splits an id", "{7df0354d-249b-430f-820d- 3d2a9bef4931}"},
		{"non-hex", "{7df0354d-249b-430f-820d-3d2a9bef493g}"},
		{"newline separator", otherProtocol + "\n" + UploadProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSupportedProtocols(tc.in)
			if err == nil {
				t.Fatalf("ParseSupportedProtocols(%q) = %q, want an error", tc.in, got)
			}
			if got != nil {
				t.Fatalf("ParseSupportedProtocols(%q) returned %q with its error, want nil", tc.in, got)
			}
		})
	}
}

// TestNegotiateProtocol checks that the upload protocol is chosen wherever
// it appears in the list, and that there is no match without it.
func TestNegotiateProtocol(t *testing.T) {
	third := "{99999999-8888-7777-6666-555555555555}"
	tests := []struct {
		name    string
		offered []string
		want    string
		wantOK  bool
	}{
		{"only entry", []string{UploadProtocol}, UploadProtocol, true},
		{"first", []string{UploadProtocol, otherProtocol, third}, UploadProtocol, true},
		{"middle", []string{otherProtocol, UploadProtocol, third}, UploadProtocol, true},
		{"last", []string{otherProtocol, third, UploadProtocol}, UploadProtocol, true},
		{"twice", []string{otherProtocol, UploadProtocol, UploadProtocol}, UploadProtocol, true},
		{"absent", []string{otherProtocol, third}, "", false},
		{"empty list", []string{}, "", false},
		{"nil list", nil, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NegotiateProtocol(tc.offered)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("NegotiateProtocol(%q) = %q, %v; want %q, %v", tc.offered, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestNegotiateParsedProtocols checks the two functions together on header
// values, as a Create-Session handler uses them; the comparison must be
// case-insensitive (reference section 8.2 item 3).
func TestNegotiateParsedProtocols(t *testing.T) {
	tests := []struct {
		header string
		wantOK bool
	}{
		{"{7df0354d-249b-430f-820d-3d2a9bef4931}", true},
		{"{7DF0354D-249B-430F-820D-3D2A9BEF4931}", true},
		{otherProtocol + ", {7DF0354D-249B-430F-820D-3D2A9BEF4931}", true},
		{otherProtocol, false},
	}
	for _, tc := range tests {
		offered, err := ParseSupportedProtocols(tc.header)
		if err != nil {
			t.Fatalf("ParseSupportedProtocols(%q) error = %v", tc.header, err)
		}
		got, ok := NegotiateProtocol(offered)
		if ok != tc.wantOK {
			t.Errorf("negotiating %q: ok = %v, want %v", tc.header, ok, tc.wantOK)
		}
		if ok && got != "{7df0354d-249b-430f-820d-3d2a9bef4931}" {
			t.Errorf("negotiating %q: got %q, want the lower-case upload protocol", tc.header, got)
		}
	}
}

// TestUploadProtocolConstant pins the GUID the client offers.
func TestUploadProtocolConstant(t *testing.T) {
	if UploadProtocol != "{7df0354d-249b-430f-820d-3d2a9bef4931}" {
		t.Fatalf("UploadProtocol = %q", UploadProtocol)
	}
	if id, err := ParseSessionID(UploadProtocol); err != nil || string(id) != UploadProtocol {
		t.Fatalf("UploadProtocol is not canonical: ParseSessionID = %q, %v", id, err)
	}
}
