package client

import "time"

// The time a fragment should take when its size is adaptive: at least
// minFragmentTime, or rttFragmentFactor round trips when that is longer,
// and at most maxFragmentTime. Every fragment costs one round trip in which
// the link is idle (the client waits for the Ack before it sends the next),
// so fragments that take 100 round trips lose about 1 % of the link.
const (
	minFragmentTime   = 2 * time.Second
	maxFragmentTime   = 30 * time.Second
	rttFragmentFactor = 100
)

// fragmentSizer chooses the size of the next fragment of an upload.
type fragmentSizer struct {
	size     int64 // the size of the next fragment
	floor    int64 // 413 answers and slow Acks never shrink below it
	ceiling  int64 // growth stops here: MaxFragmentSize, lowered by 413 answers
	adaptive bool
}

// newFragmentSizer returns the sizer of an upload by c.
func (c *Client) newFragmentSizer() fragmentSizer {
	return fragmentSizer{size: c.fragmentSize(), floor: c.minFragmentSize(), ceiling: MaxFragmentSize, adaptive: c.FragmentSize <= 0}
}

// target is the time a fragment should take on a link whose round trip
// takes rtt (0 when unknown).
func (s *fragmentSizer) target(rtt time.Duration) time.Duration {
	return min(max(minFragmentTime, rttFragmentFactor*rtt), maxFragmentTime)
}

// acked adapts the size after the Ack of a fragment of n bytes that took
// d, on a link whose round trip takes rtt. When the fragment took less
// than half the target time or more than twice it, the next fragment gets
// the size the link carried in the target time at the rate this one
// moved; in between, the size stays. The rate of a fragment includes its
// round trip and, on a new connection, TCP's slow start, so it never
// overestimates the link, and a fast link reaches the ceiling in a
// fragment or two. Short fragments (the last one of an upload) only ever
// shrink the size.
func (s *fragmentSizer) acked(n int64, d, rtt time.Duration) {
	if !s.adaptive || n <= 0 {
		return
	}
	t := s.target(rtt)
	slow := d > 2*t
	if !slow && (d >= t/2 || n < s.size) {
		return
	}
	fit := s.ceiling
	if d > 0 {
		fit = int64(min(float64(n)*float64(t)/float64(d), float64(s.ceiling)))
	}
	s.size = min(max(fit, s.floor), s.ceiling)
}

// tooLarge handles a 413 answer to a fragment of n bytes: it halves the
// size, down to the floor, and an adaptive size never grows past the new
// size again. It reports false when n is not above the floor, which makes
// the 413 fatal.
func (s *fragmentSizer) tooLarge(n int64) bool {
	if n <= s.floor {
		return false
	}
	s.size = max(n/2, s.floor)
	s.ceiling = min(s.ceiling, s.size)
	return true
}

// timedOut handles a fragment of n bytes whose request timed out: an
// adaptive size halves, down to the floor.
func (s *fragmentSizer) timedOut(n int64) {
	if s.adaptive {
		s.size = min(s.size, max(n/2, s.floor))
	}
}
