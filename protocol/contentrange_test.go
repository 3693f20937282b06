package protocol

import (
	"math"
	"strings"
	"testing"
)

// TestParseContentRangeValid checks the exact Range produced for every
// accepted form of the Content-Range header.
func TestParseContentRangeValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Range
	}{
		{"capture from MC-BUP", "bytes 0-4891/4892", Range{0, 4891, 4892}},
		{"single byte", "bytes 0-0/1", Range{0, 0, 1}},
		{"middle fragment", "bytes 100-199/1000", Range{100, 199, 1000}},
		{"final fragment", "bytes 900-999/1000", Range{900, 999, 1000}},
		{"last single byte", "bytes 999-999/1000", Range{999, 999, 1000}},
		{"MSDN capital unit", "Bytes 0-9/10", Range{0, 9, 10}},
		{"upper-case unit", "BYTES 0-9/10", Range{0, 9, 10}},
		{"mixed-case unit", "bYtEs 0-9/10", Range{0, 9, 10}},
		{"tab after unit", "bytes\t0-9/10", Range{0, 9, 10}},
		{"several spaces after unit", "bytes   0-9/10", Range{0, 9, 10}},
		{"spaces and tabs after unit", "bytes \t \t0-9/10", Range{0, 9, 10}},
		{"surrounding spaces", "  bytes 0-9/10  ", Range{0, 9, 10}},
		{"surrounding tabs", "\tbytes 0-9/10\t", Range{0, 9, 10}},
		{"leading zeros", "bytes 007-0009/00010", Range{7, 9, 10}},
		{"empty range inside upload", "bytes 5-4/10", Range{5, 4, 10}},
		{"empty range at end of upload", "bytes 10-9/10", Range{10, 9, 10}},
		{"minus one last on non-empty upload", "bytes 0--1/10", Range{0, -1, 10}},
		{"empty file, client formula", "bytes 0--1/0", Range{0, -1, 0}},
		{"empty file, star form", "bytes */0", Range{0, -1, 0}},
		{"empty file, star form upper unit", "BYTES */0", Range{0, -1, 0}},
		{"empty file, zero-zero form", "bytes 0-0/0", Range{0, -1, 0}},
		{"empty file, star with leading zeros", "bytes */000", Range{0, -1, 0}},
		{"max int64 total", "bytes 0-9223372036854775806/9223372036854775807",
			Range{0, math.MaxInt64 - 1, math.MaxInt64}},
		{"max int64 total, last byte", "bytes 9223372036854775806-9223372036854775806/9223372036854775807",
			Range{math.MaxInt64 - 1, math.MaxInt64 - 1, math.MaxInt64}},
		{"19 digits with leading zeros", "bytes 0000000000000000001-0000000000000000002/0000000000000000003",
			Range{1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseContentRange(tc.in)
			if err != nil {
				t.Fatalf("ParseContentRange(%q) error = %v, want %+v", tc.in, err, tc.want)
			}
			if got != tc.want {
				t.Fatalf("ParseContentRange(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// TestParseContentRangeInvalid checks that every malformed or inconsistent
// Content-Range is refused and that no partial Range leaks out.
func TestParseContentRangeInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"spaces only", "   "},
		{"unit only", "bytes"},
		{"unit and space only", "bytes "},
		{"missing unit", "0-1/2"},
		{"missing unit with star", "*/5"},
		{"missing unit with star zero", "*/0"},
		{"equals instead of space", "bytes=0-1/2"},
		{"no separator after unit", "bytes0-1/2"},
		{"other unit", "items 0-1/2"},
		{"unit prefix only", "byte 0-1/2"},
		{"longer unit", "bytess 0-1/2"},
		{"star with non-zero total", "bytes */5"},
		{"star with star total", "bytes */*"},
		{"star with trailing space in spec", "bytes * /0"},
		{"first after last plus one", "bytes 5-3/10"},
		{"first far after last", "bytes 9-0/10"},
		{"last equals total", "bytes 0-10/10"},
		{"last above total", "bytes 0-11/10"},
		{"non-empty range of empty upload", "bytes 0-1/0"},
		{"byte one of an empty upload", "bytes 1-1/0"},
		{"minus one last with non-zero first", "bytes 1--1/10"},
		{"minus one last with non-zero first, empty upload", "bytes 1--1/0"},
		{"minus two last", "bytes 0--2/10"},
		{"minus one with leading zero", "bytes 0--01/10"},
		{"negative first", "bytes -1-5/10"},
		{"negative total", "bytes 0-1/-2"},
		{"minus one total", "bytes 0--1/-1"},
		{"plus sign first", "bytes +1-2/10"},
		{"plus sign last", "bytes 0-+1/10"},
		{"plus sign total", "bytes 0-1/+10"},
		{"first overflows int64", "bytes 9223372036854775808-9223372036854775808/9223372036854775809"},
		{"last overflows int64", "bytes 0-9223372036854775808/9223372036854775807"},
		{"total overflows int64", "bytes 0-1/9223372036854775808"},
		{"20-digit total", "bytes 0-1/10000000000000000000"},
		{"20-digit zero-padded total", "bytes 0-1/00000000000000000010"},
		{"20-digit zero-padded first", "bytes 00000000000000000000-1/10"},
		{"missing total", "bytes 0-1"},
		{"empty total", "bytes 0-1/"},
		{"unknown total", "bytes 0-1/*"},
		{"missing last", "bytes 0-/10"},
		{"missing first", "bytes -1/10"},
		{"no dash", "bytes 01/10"},
		{"two ranges", "bytes 0-1,2-3/10"},
		{"extra dash", "bytes 0-1-2/10"},
		{"extra slash", "bytes 0-1/2/3"},
		{"space inside range", "bytes 0 -1/10"},
		{"space after dash", "bytes 0- 1/10"},
		{"space before slash", "bytes 0-1 /10"},
		{"space after slash", "bytes 0-1/ 10"},
		{"hex number", "bytes 0x0-0x1/0x10"},
		{"decimal point", "bytes 0-1.0/10"},
		{"trailing garbage", "bytes 0-1/10x"},
		{"garbage", "garbage"},
		{"newline after unit", "bytes\n0-1/10"},
		{"NUL in number", "bytes 0-1\x00/10"},
		{"full-width digits", "bytes ０-１/１０"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseContentRange(tc.in)
			if err == nil {
				t.Fatalf("ParseContentRange(%q) = %+v, want an error", tc.in, got)
			}
			if got != (Range{}) {
				t.Fatalf("ParseContentRange(%q) returned %+v with its error, want the zero Range", tc.in, got)
			}
		})
	}
}

// TestParseContentRangeErrorMentionsProblem checks that the error messages
// are useful in a log: they name what is wrong.
func TestParseContentRangeErrorMentionsProblem(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"0-1/2", `"bytes "`},
		{"bytes 0-1", "no total"},
		{"bytes 0-1/x", "total"},
		{"bytes */5", "empty upload"},
		{"bytes 01/2", "first-last"},
		{"bytes x-1/2", "first byte"},
		{"bytes 0-x/2", "last byte"},
		{"bytes 3-1/5", "after last byte"},
		{"bytes 0-5/5", "not below total"},
	}
	for _, tc := range tests {
		_, err := ParseContentRange(tc.in)
		if err == nil {
			t.Errorf("ParseContentRange(%q) succeeded, want an error", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseContentRange(%q) error = %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

// TestRangeLen checks the byte count of ranges, including empty ones.
func TestRangeLen(t *testing.T) {
	tests := []struct {
		r    Range
		want int64
	}{
		{Range{0, 4891, 4892}, 4892},
		{Range{0, 0, 1}, 1},
		{Range{100, 199, 1000}, 100},
		{Range{0, -1, 0}, 0},
		{Range{0, -1, 10}, 0},
		{Range{5, 4, 10}, 0},
		{Range{0, math.MaxInt64 - 1, math.MaxInt64}, math.MaxInt64},
	}
	for _, tc := range tests {
		if got := tc.r.Len(); got != tc.want {
			t.Errorf("%+v.Len() = %d, want %d", tc.r, got, tc.want)
		}
	}
}

// TestRangeIsFinal checks which ranges end at the last byte of the upload.
func TestRangeIsFinal(t *testing.T) {
	tests := []struct {
		r    Range
		want bool
	}{
		{Range{0, 4891, 4892}, true},
		{Range{900, 999, 1000}, true},
		{Range{999, 999, 1000}, true},
		{Range{0, 998, 1000}, false},
		{Range{100, 199, 1000}, false},
		{Range{0, -1, 0}, true},   // The empty upload is complete at once.
		{Range{0, -1, 10}, false}, // An empty range at 0 of a 10-byte upload is not.
		{Range{10, 9, 10}, true},  // An empty range at the end ends at the last byte.
		{Range{0, math.MaxInt64 - 1, math.MaxInt64}, true},
	}
	for _, tc := range tests {
		if got := tc.r.IsFinal(); got != tc.want {
			t.Errorf("%+v.IsFinal() = %v, want %v", tc.r, got, tc.want)
		}
	}
}

// TestRangeString checks the exact Content-Range text and that it parses
// back to the same Range.
func TestRangeString(t *testing.T) {
	tests := []struct {
		r    Range
		want string
	}{
		{Range{0, 4891, 4892}, "bytes 0-4891/4892"},
		{Range{100, 199, 1000}, "bytes 100-199/1000"},
		{Range{0, -1, 0}, "bytes 0--1/0"},
		{Range{0, -1, 10}, "bytes 0--1/10"},
		{Range{5, 4, 10}, "bytes 5-4/10"},
		{Range{0, math.MaxInt64 - 1, math.MaxInt64}, "bytes 0-9223372036854775806/9223372036854775807"},
	}
	for _, tc := range tests {
		got := tc.r.String()
		if got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.r, got, tc.want)
			continue
		}
		back, err := ParseContentRange(got)
		if err != nil || back != tc.r {
			t.Errorf("ParseContentRange(%q) = %+v, %v; want %+v, nil", got, back, err, tc.r)
		}
	}
}

// TestEmptyUploadFormsAreEquivalent checks that the three zero-length forms
// a client may send describe the same, already final, empty range.
func TestEmptyUploadFormsAreEquivalent(t *testing.T) {
	want := Range{First: 0, Last: -1, Total: 0}
	for _, in := range []string{"bytes 0--1/0", "bytes */0", "bytes 0-0/0"} {
		r, err := ParseContentRange(in)
		if err != nil {
			t.Fatalf("ParseContentRange(%q) error = %v", in, err)
		}
		if r != want {
			t.Errorf("ParseContentRange(%q) = %+v, want %+v", in, r, want)
		}
		if r.Len() != 0 {
			t.Errorf("ParseContentRange(%q).Len() = %d, want 0", in, r.Len())
		}
		if !r.IsFinal() {
			t.Errorf("ParseContentRange(%q).IsFinal() = false, want true", in)
		}
		if s := r.String(); s != "bytes 0--1/0" {
			t.Errorf("ParseContentRange(%q).String() = %q, want %q", in, s, "bytes 0--1/0")
		}
	}
}

// TestClassifyFragment covers every row of the fragment decision table
// (reference section 3.2) that depends only on the held offset.
func TestClassifyFragment(t *testing.T) {
	tests := []struct {
		name       string
		received   int64
		r          Range
		wantAction FragmentAction
		wantSkip   int64
	}{
		// In order: a == expected.
		{"first fragment", 0, Range{0, 99, 1000}, Append, 0},
		{"next fragment in order", 100, Range{100, 199, 1000}, Append, 0},
		{"final fragment in order", 900, Range{900, 999, 1000}, Append, 0},
		{"single byte in order", 999, Range{999, 999, 1000}, Append, 0},
		{"whole file in one fragment", 0, Range{0, 4891, 4892}, Append, 0},

		// Overlap: a < expected <= b; only the tail is new.
		{"MSDN example 0-100 then 50-150", 101, Range{50, 150, 200}, Append, 51},
		{"overlap by one byte", 100, Range{99, 199, 1000}, Append, 1},
		{"overlap all but the last byte", 199, Range{100, 199, 1000}, Append, 99},
		{"overlap from zero", 500, Range{0, 999, 1000}, Append, 500},

		// Full retransmit: b < expected.
		{"retransmit after lost Ack", 100, Range{0, 99, 1000}, AlreadyHeld, 0},
		{"retransmit of an old fragment", 500, Range{100, 199, 1000}, AlreadyHeld, 0},
		{"retransmit of the final fragment", 1000, Range{900, 999, 1000}, AlreadyHeld, 0},
		{"retransmit of the whole file", 4892, Range{0, 4891, 4892}, AlreadyHeld, 0},

		// Gap: a > expected.
		{"gap of one byte", 100, Range{101, 199, 1000}, Gap, 0},
		{"client ahead after server data loss", 0, Range{500, 599, 1000}, Gap, 0},
		{"final fragment beyond a gap", 100, Range{900, 999, 1000}, Gap, 0},
		{"empty range beyond the held offset", 3, Range{5, 4, 10}, Gap, 0},

		// Empty ranges at or before the held offset hold nothing new.
		{"empty range at received", 5, Range{5, 4, 10}, AlreadyHeld, 0},
		{"empty range at zero of non-empty upload", 0, Range{0, -1, 10}, AlreadyHeld, 0},
		{"empty range at end after completion", 10, Range{10, 9, 10}, AlreadyHeld, 0},
		{"empty range behind received", 7, Range{5, 4, 10}, AlreadyHeld, 0},

		// The empty upload: nothing to write, the session is complete.
		{"empty upload", 0, Range{0, -1, 0}, AlreadyHeld, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			action, skip := ClassifyFragment(tc.received, tc.r)
			if action != tc.wantAction || skip != tc.wantSkip {
				t.Fatalf("ClassifyFragment(%d, %+v) = (%v, %d), want (%v, %d)",
					tc.received, tc.r, action, skip, tc.wantAction, tc.wantSkip)
			}
			if action == Append {
				// The bytes written are exactly received..Last.
				if tail := tc.r.Len() - skip; tail != tc.r.Last+1-tc.received {
					t.Fatalf("Append writes %d bytes, want %d", tail, tc.r.Last+1-tc.received)
				}
			}
		})
	}
}

// TestClassifyFragmentParsedEmptyForms checks that every empty-file form,
// parsed from the wire, is classified as already held at offset zero.
func TestClassifyFragmentParsedEmptyForms(t *testing.T) {
	for _, in := range []string{"bytes 0--1/0", "bytes */0", "bytes 0-0/0"} {
		r, err := ParseContentRange(in)
		if err != nil {
			t.Fatalf("ParseContentRange(%q) error = %v", in, err)
		}
		if action, skip := ClassifyFragment(0, r); action != AlreadyHeld || skip != 0 {
			t.Errorf("ClassifyFragment(0, %q) = (%v, %d), want (AlreadyHeld, 0)", in, action, skip)
		}
	}
}
