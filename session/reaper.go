package session

import (
	"time"

	"go.uber.org/zap"
)

// reapInterval returns how often the reaper checks for idle sessions: a
// quarter of the timeout, between 250 milliseconds and five minutes. A
// session is therefore removed at most a quarter of its timeout late.
func reapInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/4, 250*time.Millisecond), 5*time.Minute)
}

// reaper runs Reap periodically until the store is closed.
func (s *Store) reaper() {
	defer close(s.reaperDone)
	t := time.NewTimer(reapInterval(s.EmptyTimeout()))
	defer t.Stop()
	for {
		select {
		case <-s.reaperStop:
			return
		case <-s.reaperKick:
		case <-t.C:
			s.Reap()
		}
		t.Reset(reapInterval(s.EmptyTimeout()))
	}
}

// Reap deletes every session idle for longer than the timeout, and every
// session that has received no byte and is idle for longer than the empty
// session timeout, and forgets expired tombstones. A session with a
// request in flight is never reaped. The ids of reaped sessions that were
// finished are remembered like closed ones, so that a late Close-Session
// succeeds; unfinished ones are forgotten, so their client starts over.
// It returns the number of sessions removed.
func (s *Store) Reap() int {
	now := s.now()
	cutoff := now.Add(-s.Timeout())
	emptyCutoff := now.Add(-s.EmptyTimeout())
	expired := func(st *State) bool {
		return st.LastActivity.Before(cutoff) ||
			(st.Received == 0 && !st.Finished && !st.Committed && st.LastActivity.Before(emptyCutoff))
	}
	s.mu.RLock()
	var idle []*Session
	for _, sess := range s.sessions {
		sess.mu.Lock()
		if expired(&sess.st) {
			idle = append(idle, sess)
		}
		sess.mu.Unlock()
	}
	s.mu.RUnlock()
	n := 0
	for _, sess := range idle {
		if !sess.lock.tryLock() {
			continue
		}
		st := sess.State()
		if !sess.Gone() && expired(&st) {
			if _, err := s.remove(sess, RemovedReaped, st.Finished || st.Committed); err != nil {
				s.logger.Error("reaping idle session", zap.String("session_id", sess.id.Wire()), zap.Error(err))
			} else {
				n++
				s.logger.Info("reaped idle session",
					zap.String("session_id", sess.id.Wire()),
					zap.String("destination", st.DestinationPath()),
					zap.Int64("received", st.Received),
					zap.Int64("total", st.Total),
					zap.Time("last_activity", st.LastActivity))
			}
		}
		sess.lock.unlock()
	}
	if err := s.journal.expire(now.Add(-s.tombstoneTTL())); err != nil {
		s.logger.Warn("compacting the session journal", zap.Error(err))
	}
	return n
}
