package protocol

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// contentRangeOracle matches the Content-Range grammar ParseContentRange
// accepts, written independently of it. The unit is spelled out letter by
// letter because (?i) would also fold non-ASCII letters such as U+017F.
var contentRangeOracle = regexp.MustCompile(
	`^[ \t]*[bB][yY][tT][eE][sS][ \t]+(?:(\*)|([0-9]{1,19})-(-1|[0-9]{1,19}))/([0-9]{1,19})[ \t]*$`)

// oracleContentRange is an independent model of ParseContentRange, built on
// the regular expression above and strconv.
func oracleContentRange(s string) (Range, bool) {
	m := contentRangeOracle.FindStringSubmatch(s)
	if m == nil {
		return Range{}, false
	}
	total, err := strconv.ParseInt(m[4], 10, 64)
	if err != nil {
		return Range{}, false
	}
	if m[1] == "*" {
		return Range{0, -1, 0}, total == 0
	}
	first, err1 := strconv.ParseInt(m[2], 10, 64)
	last, err2 := strconv.ParseInt(m[3], 10, 64)
	if err1 != nil || err2 != nil {
		return Range{}, false
	}
	if first == 0 && last == 0 && total == 0 {
		last = -1
	}
	if first > last+1 || last >= total {
		return Range{}, false
	}
	return Range{first, last, total}, true
}

// contentRangeSeeds are the interesting forms of Content-Range.
var contentRangeSeeds = []string{
	"bytes 0-4891/4892", "Bytes 0-9/10", "BYTES 0-9/10", "bytes\t0-9/10", "  bytes   0-9/10  ",
	"bytes 0--1/0", "bytes */0", "bytes 0-0/0", "bytes 0--1/10", "bytes 5-4/10",
	"bytes */5", "*/5", "bytes=0-1/2", "bytes 5-3/10", "bytes 0-10/10", "bytes 1--1/0",
	"bytes +1-2/3", "bytes 0-1/9223372036854775808", "bytes 0-1/10000000000000000000",
	"bytes 0-9223372036854775806/9223372036854775807", "bytes 0-1", "bytes 0-1/*", "garbage", "",
	"bytes 0-1/2/3", "byteſ 0-1/2",
}

// FuzzParseContentRange checks ParseContentRange against an independent
// model and checks the invariants of every accepted Range.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range contentRangeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseContentRange(s)
		want, wantOK := oracleContentRange(s)
		if (err == nil) != wantOK {
			t.Fatalf("ParseContentRange(%q) = %+v, %v; the model says ok=%v (%+v)", s, r, err, wantOK, want)
		}
		if err != nil {
			if r != (Range{}) {
				t.Fatalf("ParseContentRange(%q) returned %+v with error %v", s, r, err)
			}
			return
		}
		if r != want {
			t.Fatalf("ParseContentRange(%q) = %+v, the model says %+v", s, r, want)
		}
		if r.First < 0 || r.Total < 0 || r.Last < -1 {
			t.Fatalf("ParseContentRange(%q) = %+v has a negative field", s, r)
		}
		if r.Last == -1 && r.First != 0 {
			t.Fatalf("ParseContentRange(%q) = %+v: last -1 with a non-zero first", s, r)
		}
		if r.First > r.Last+1 {
			t.Fatalf("ParseContentRange(%q) = %+v: first is after last+1", s, r)
		}
		if r.Last >= r.Total {
			t.Fatalf("ParseContentRange(%q) = %+v: last is not below total", s, r)
		}
		if n := r.Len(); n < 0 || n > r.Total-r.First {
			t.Fatalf("ParseContentRange(%q).Len() = %d, want 0..%d", s, n, r.Total-r.First)
		}
		if r.IsFinal() != (r.Last+1 == r.Total) {
			t.Fatalf("ParseContentRange(%q).IsFinal() = %v", s, r.IsFinal())
		}
		back, err := ParseContentRange(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseContentRange(%q) = %+v, %v; want %+v (from %q)", r.String(), back, err, r, s)
		}
	})
}

// sessionIDOracle matches exactly one braced GUID.
var sessionIDOracle = regexp.MustCompile(
	`^\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}$`)

// FuzzParseSessionID checks ParseSessionID against a regular expression and
// checks that accepted ids are canonical and round-trip.
func FuzzParseSessionID(f *testing.F) {
	for _, s := range []string{
		"{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}",
		" \t{A0fF5911-4144-45b3-Bf27-27aFc8eC8a67}\t ", "a0ff5911-4144-45b3-bf27-27afc8ec8a67",
		"{a0ff5911-4144-45b3-bf27-27afc8ec8a6}", "{a0ff5911-4144-45b3-bf27-27afc8ec8a670}",
		"{../../..-../.-./..-/etc-/passwd.bin.}", "{a0ff591-14144-45b3-bf27-27afc8ec8a67}",
		"{a0ff5911-4144-45b3-bf27-27afc8ec8a٦}", "", "{}", "\u00a0{a0ff5911-4144-45b3-bf27-27afc8ec8a67}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSessionID(s)
		trimmed := strings.Trim(s, " \t")
		wantOK := sessionIDOracle.MatchString(trimmed)
		if (err == nil) != wantOK {
			t.Fatalf("ParseSessionID(%q) = %q, %v; the model says ok=%v", s, id, err, wantOK)
		}
		if err != nil {
			if id != "" || !errors.Is(err, ErrMalformedSessionID) {
				t.Fatalf("ParseSessionID(%q) = %q, %v; want \"\", ErrMalformedSessionID", s, id, err)
			}
			return
		}
		str := string(id)
		if len(str) != 38 || str[0] != '{' || str[37] != '}' {
			t.Fatalf("ParseSessionID(%q) = %q, want a 38-byte braced id", s, id)
		}
		if str != strings.ToLower(str) || !strings.EqualFold(str, trimmed) {
			t.Fatalf("ParseSessionID(%q) = %q, want the lower-case form of %q", s, id, trimmed)
		}
		if strings.ContainsAny(str, `/\.`+"\x00") {
			t.Fatalf("ParseSessionID(%q) = %q is not safe as a file name", s, id)
		}
		if again, err := ParseSessionID(str); err != nil || again != id {
			t.Fatalf("ParseSessionID(%q) = %q, %v; not idempotent", str, again, err)
		}
		wire := id.Wire()
		if wire != strings.ToUpper(str) {
			t.Fatalf("%q.Wire() = %q, want %q", id, wire, strings.ToUpper(str))
		}
		if again, err := ParseSessionID(wire); err != nil || again != id {
			t.Fatalf("ParseSessionID(%q) = %q, %v; want %q", wire, again, err, id)
		}
		if id.Bare() != str[1:37] {
			t.Fatalf("%q.Bare() = %q", id, id.Bare())
		}
	})
}

// FuzzParseSupportedProtocols checks that accepted lists have 1 to 100
// canonical entries, one per field of the input, and that negotiation
// agrees with them.
func FuzzParseSupportedProtocols(f *testing.F) {
	// The 100- and 101-entry limits are covered by
	// TestParseSupportedProtocolsLimit; seeds of that size (about 4 KB) would
	// make the fuzzing engine spend its time minimising large inputs.
	for _, s := range []string{
		UploadProtocol, strings.ToUpper(UploadProtocol),
		otherProtocol + " " + UploadProtocol, otherProtocol + "," + UploadProtocol,
		otherProtocol + ", " + UploadProtocol, "\t" + otherProtocol + "\t,\t" + UploadProtocol + "\t",
		otherProtocol, "", " ", ",", "garbage", UploadProtocol + " garbage", UploadProtocol[1:37],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSupportedProtocols(s)
		fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
		allGUIDs := true
		for _, fld := range fields {
			if !sessionIDOracle.MatchString(fld) {
				allGUIDs = false
			}
		}
		wantOK := len(fields) >= 1 && len(fields) <= MaxSupportedProtocols && allGUIDs
		if (err == nil) != wantOK {
			t.Fatalf("ParseSupportedProtocols(%q) = %q, %v; the model says ok=%v", s, got, err, wantOK)
		}
		if err != nil {
			if got != nil {
				t.Fatalf("ParseSupportedProtocols(%q) returned %q with error %v", s, got, err)
			}
			return
		}
		if len(got) < 1 || len(got) > MaxSupportedProtocols || len(got) != len(fields) {
			t.Fatalf("ParseSupportedProtocols(%q) has %d entries, want %d within 1..%d", s, len(got), len(fields), MaxSupportedProtocols)
		}
		hasUpload := false
		for i, p := range got {
			if id, err := ParseSessionID(p); err != nil || string(id) != p {
				t.Fatalf("entry %d %q is not a canonical braced GUID", i, p)
			}
			if !strings.EqualFold(p, fields[i]) {
				t.Fatalf("entry %d is %q, want the canonical form of %q", i, p, fields[i])
			}
			if p == UploadProtocol {
				hasUpload = true
			}
		}
		chosen, ok := NegotiateProtocol(got)
		if ok != hasUpload || (ok && chosen != UploadProtocol) || (!ok && chosen != "") {
			t.Fatalf("NegotiateProtocol(%q) = %q, %v; upload protocol offered: %v", got, chosen, ok, hasUpload)
		}
	})
}

// FuzzParsePacketType checks that accepted values name their type, and, for
// ASCII input, compares with a lower-case lookup.
func FuzzParsePacketType(f *testing.F) {
	for _, s := range []string{
		"Ping", "PING", "ping", "Create-Session", "CREATE-SESSION", "Fragment", "fragment",
		"close-session", "Cancel-Session", " Ping ", "\tAck\t", "Ack", "", "Pings", "CreateSession",
		"Create-Seſſion", "Ping\u00a0",
	} {
		f.Add(s)
	}
	byLower := map[string]PacketType{}
	for pt := PacketPing; pt <= PacketAck; pt++ {
		byLower[strings.ToLower(pt.String())] = pt
	}
	f.Fuzz(func(t *testing.T, s string) {
		pt, ok := ParsePacketType(s)
		if !ok {
			if pt != PacketUnknown {
				t.Fatalf("ParsePacketType(%q) = %v, false; want PacketUnknown", s, pt)
			}
		} else {
			if pt < PacketPing || pt > PacketAck {
				t.Fatalf("ParsePacketType(%q) = %d, out of range", s, pt)
			}
			if !strings.EqualFold(strings.Trim(s, " \t"), pt.String()) {
				t.Fatalf("ParsePacketType(%q) = %q, which the input does not spell", s, pt)
			}
			if again, ok := ParsePacketType(pt.String()); !ok || again != pt {
				t.Fatalf("ParsePacketType(%q) = %v, %v; want %v", pt.String(), again, ok, pt)
			}
			if pt.HasBody() != (pt == PacketFragment) {
				t.Fatalf("%v.HasBody() = %v", pt, pt.HasBody())
			}
			if pt.NeedsSession() != (pt == PacketFragment || pt == PacketCloseSession || pt == PacketCancelSession) {
				t.Fatalf("%v.NeedsSession() = %v", pt, pt.NeedsSession())
			}
		}
		if isASCII(s) {
			// Only the spaces and tabs HTTP allows around a value are
			// trimmed.
			want, wantOK := byLower[strings.ToLower(strings.Trim(s, " \t"))]
			if ok != wantOK || pt != want {
				t.Fatalf("ParsePacketType(%q) = %v, %v; want %v, %v", s, pt, ok, want, wantOK)
			}
		}
	})
}

// isASCII reports whether s has only 7-bit bytes.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzCleanRemotePath checks that every accepted path is a clean, relative,
// slash-separated path without dangerous bytes, and that it survives a
// round trip through percent-encoding.
func FuzzCleanRemotePath(f *testing.F) {
	// The length limit is covered by TestCleanRemotePathLengthLimit; a 4 KB
	// seed would make the fuzzing engine spend its time minimising.
	for _, s := range []string{
		"/a.bin", "/dir/sub/file.txt", "/my%20file.bin", "/%C3%A9t%C3%A9.txt", "", "/", "/dir/",
		"/../x", "/a/../b", "/a/./b", "/%2e%2e/x", "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%00b",
		"/a%0ab", "//etc/passwd", "/a//b", "relative", "/%zz", "/...", "/%ff.bin", "/%C0%AF.bin",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := CleanRemotePath(s)
		if err != nil {
			if p != "" {
				t.Fatalf("CleanRemotePath(%q) returned %q with error %v", s, p, err)
			}
			if errors.Is(err, ErrDirectoryTarget) && s != "" && !(strings.HasPrefix(s, "/") && strings.HasSuffix(s, "/")) {
				t.Fatalf("CleanRemotePath(%q) = ErrDirectoryTarget for a path not ending in /", s)
			}
			return
		}
		if len(s) > MaxRemotePathLength || !strings.HasPrefix(s, "/") {
			t.Fatalf("CleanRemotePath(%q) accepted an over-long or relative path", s)
		}
		if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			t.Fatalf("CleanRemotePath(%q) = %q, want a non-empty relative file path", s, p)
		}
		if path.Clean(p) != p {
			t.Fatalf("CleanRemotePath(%q) = %q, which path.Clean changes to %q", s, p, path.Clean(p))
		}
		if !utf8.ValidString(p) {
			t.Fatalf("CleanRemotePath(%q) = %+q is not valid UTF-8", s, p)
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c == '\\' || c < 0x20 || c == 0x7f {
				t.Fatalf("CleanRemotePath(%q) = %q contains byte 0x%02x", s, p, c)
			}
		}
		segs := strings.Split(p, "/")
		escaped := make([]string, len(segs))
		for i, seg := range segs {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("CleanRemotePath(%q) = %q has segment %q", s, p, seg)
			}
			escaped[i] = url.PathEscape(seg)
		}
		if !strings.Contains(s, "%") && p != s[1:] {
			t.Fatalf("CleanRemotePath(%q) = %q, want the input without its slash", s, p)
		}
		reencoded := "/" + strings.Join(escaped, "/")
		if len(reencoded) <= MaxRemotePathLength {
			if again, err := CleanRemotePath(reencoded); err != nil || again != p {
				t.Fatalf("CleanRemotePath(%q) = %q, %v; want %q (from %q)", reencoded, again, err, p, s)
			}
		}
	})
}

// FuzzClassifyFragment builds a Content-Range from the fuzzed numbers, and
// for each range ParseContentRange accepts checks that ClassifyFragment
// partitions the held offsets exactly as the decision table says.
func FuzzClassifyFragment(f *testing.F) {
	for _, c := range []struct {
		received, first, last, total int64
		star                         bool
	}{
		{0, 0, 99, 1000, false},      // In order.
		{101, 50, 150, 200, false},   // Overlap.
		{100, 0, 99, 1000, false},    // Full retransmit.
		{100, 101, 199, 1000, false}, // Gap.
		{5, 5, 4, 10, false},         // Empty range at received.
		{0, 0, -1, 0, false},         // Empty upload, client formula.
		{0, 0, 0, 0, true},           // Empty upload, star form.
		{0, 0, 0, 0, false},          // Empty upload, zero-zero form.
		{1000, 900, 999, 1000, false},
		{9223372036854775806, 0, 9223372036854775806, 9223372036854775807, false},
		{-1, 0, 0, 1, false},
	} {
		f.Add(c.received, c.first, c.last, c.total, c.star)
	}
	f.Fuzz(func(t *testing.T, received, first, last, total int64, star bool) {
		header := fmt.Sprintf("bytes %d-%d/%d", first, last, total)
		if star {
			header = fmt.Sprintf("bytes */%d", total)
		}
		r, err := ParseContentRange(header)
		if err != nil {
			return
		}
		action, skip := ClassifyFragment(received, r)
		switch {
		case r.First > received:
			if action != Gap || skip != 0 {
				t.Fatalf("ClassifyFragment(%d, %+v) = (%v, %d), want (Gap, 0)", received, r, action, skip)
			}
		case r.Last < received:
			if action != AlreadyHeld || skip != 0 {
				t.Fatalf("ClassifyFragment(%d, %+v) = (%v, %d), want (AlreadyHeld, 0)", received, r, action, skip)
			}
		default:
			// First <= received <= Last: the fragment holds new bytes.
			if action != Append {
				t.Fatalf("ClassifyFragment(%d, %+v) = (%v, %d), want Append", received, r, action, skip)
			}
			if skip != received-r.First || skip < 0 || skip >= r.Len() {
				t.Fatalf("ClassifyFragment(%d, %+v) skip = %d, want %d in [0, %d)", received, r, skip, received-r.First, r.Len())
			}
			if tail := r.Len() - skip; tail < 1 || r.First+skip+tail != r.Last+1 {
				t.Fatalf("ClassifyFragment(%d, %+v): writing %d bytes from %d does not end at %d", received, r, tail, r.First+skip, r.Last+1)
			}
		}
		if action == Append && r.Len() == 0 {
			t.Fatalf("ClassifyFragment(%d, %+v) = Append for an empty range", received, r)
		}
		if action != Append && skip != 0 {
			t.Fatalf("ClassifyFragment(%d, %+v) = (%v, %d), skip must be 0", received, r, action, skip)
		}
		// The offset held after the fragment never moves backwards and never
		// passes the total.
		if received >= 0 && received <= r.Total {
			next := received
			if action == Append {
				next = r.Last + 1
			}
			if next < received || next > r.Total {
				t.Fatalf("ClassifyFragment(%d, %+v): next offset %d outside [%d, %d]", received, r, next, received, r.Total)
			}
		}
	})
}
