package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Range is the byte range of a Fragment, from its Content-Range header.
// First and Last are zero-based and inclusive, as in HTTP; an empty range
// has Last == First-1. Total is the size of the whole upload.
type Range struct {
	First int64
	Last  int64
	Total int64
}

// Len returns the number of bytes in the range.
func (r Range) Len() int64 { return r.Last - r.First + 1 }

// IsFinal reports whether the range ends at the last byte of the upload,
// which makes its fragment the final one.
func (r Range) IsFinal() bool { return r.Last+1 == r.Total }

// String formats the range as a Content-Range value. Empty ranges use the
// "bytes a-(a-1)/total" form a Windows client computes for them.
func (r Range) String() string {
	return fmt.Sprintf("bytes %d-%d/%d", r.First, r.Last, r.Total)
}

// ParseContentRange parses the Content-Range header of a Fragment:
// "bytes <first>-<last>/<total>", with the unit matched case-insensitively.
// Besides the usual form it accepts the zero-length forms a client may send
// for an empty file: "bytes 0--1/0", "bytes */0" and "bytes 0-0/0" (the last
// must come with an empty body, which [Range.Len] then enforces). It checks
// that first <= last+1 and last < total; any violation is an error.
func ParseContentRange(s string) (Range, error) {
	s = trimOWS(s)
	if len(s) < 6 || !strings.EqualFold(s[:5], "bytes") || (s[5] != ' ' && s[5] != '\t') {
		return Range{}, errors.New(`content-range must start with "bytes "`)
	}
	s = trimOWS(s[6:])
	spec, totalStr, ok := strings.Cut(s, "/")
	if !ok {
		return Range{}, errors.New("content-range has no total length")
	}
	total, ok := parseDecimal(totalStr)
	if !ok {
		return Range{}, fmt.Errorf("content-range total %.30q is not a decimal number", totalStr)
	}
	if spec == "*" {
		if total != 0 {
			return Range{}, errors.New(`content-range "*" is only valid for an empty upload`)
		}
		return Range{First: 0, Last: -1, Total: 0}, nil
	}
	firstStr, lastStr, ok := strings.Cut(spec, "-")
	if !ok {
		return Range{}, errors.New("content-range has no first-last pair")
	}
	first, ok := parseDecimal(firstStr)
	if !ok {
		return Range{}, fmt.Errorf("content-range first byte %.30q is not a decimal number", firstStr)
	}
	var last int64
	if lastStr == "-1" {
		last = -1
	} else if last, ok = parseDecimal(lastStr); !ok {
		return Range{}, fmt.Errorf("content-range last byte %.30q is not a decimal number", lastStr)
	}
	if total == 0 && first == 0 && last == 0 {
		// "bytes 0-0/0" describes the empty file in the only form some
		// clients can produce; its body must then be empty.
		last = -1
	}
	r := Range{First: first, Last: last, Total: total}
	if first > last+1 {
		return Range{}, fmt.Errorf("content-range first byte %d is after last byte %d", first, last)
	}
	if last >= total {
		return Range{}, fmt.Errorf("content-range last byte %d is not below total %d", last, total)
	}
	return r, nil
}

// parseDecimal parses a non-negative decimal int64 with no sign, no
// whitespace and no overflow.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// FragmentAction is what the server does with a Fragment, given how many
// contiguous bytes it already holds.
type FragmentAction int

const (
	// Append: the fragment starts at or before the next expected byte and
	// ends after it. Only the new tail is written; held bytes are never
	// rewritten.
	Append FragmentAction = iota
	// AlreadyHeld: every byte of the fragment is already held (a
	// retransmission after a lost Ack). The body is discarded and the Ack
	// reports the current offset with 200.
	AlreadyHeld
	// Gap: the fragment starts after the next expected byte. The body is
	// discarded and the Ack is 416 with the current offset, so the client
	// resends from there.
	Gap
)

// ClassifyFragment applies the fragment decision table ([MC-BUP] 3.2.5.2.6
// with the overlap recommendation of MSDN's Fragment page) to a range that
// [ParseContentRange] accepted and whose total matches the session's.
//
// An overlapping fragment is appended (its new tail written, 200), where
// [MC-BUP]'s literal rule would answer 416. Windows clients treat both
// alike and adopt the offset they are given; appending saves the client a
// round trip and a resend, and never rewrites a byte already held.
//
// For Append it also returns how many leading bytes of the body are already
// held and must be skipped.
func ClassifyFragment(received int64, r Range) (action FragmentAction, skip int64) {
	switch {
	case r.First > received:
		return Gap, 0
	case r.Last < received:
		return AlreadyHeld, 0
	default:
		return Append, received - r.First
	}
}
