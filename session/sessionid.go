package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// A session id is a version 4 GUID whose 122 free bits the store fills
// with:
//
//	48 bits  a random nonce
//	12 bits  the hour of creation (hours since the Unix epoch, modulo 4096)
//	62 bits  an HMAC-SHA256, under the store's key, of the nonce, the hour,
//	         and the session's root, path and user
//
// So an id says, to this store only, for which destination and which user
// it was made, and when. A session that had received no byte when the
// process crashed left nothing on disk, and needs nothing: the next packet
// of its client carries the id and names the destination, and Revive
// makes the session again from them. Creating a session therefore costs no
// disk write, and no client ever starts over because of it. An id cannot
// be forged for another destination or user without the key, nor revived
// once its session was closed (its tombstone is checked) or after the
// session timeout.

// idHours is the period of the hour field.
const idHours = 1 << 12

// mintID returns a new session id for a session with the given
// destination and user, created at now.
func (s *Store) mintID(root, path, user string, now time.Time) (protocol.SessionID, error) {
	var b [16]byte
	if _, err := rand.Read(b[:6]); err != nil {
		return "", fmt.Errorf("creating session id: %w", err)
	}
	hour := uint16(now.Unix()/3600) % idHours //nolint:gosec // the hour is meant to wrap
	b[6] = 0x40 | byte(hour>>8)
	b[7] = byte(hour)
	m := s.idMAC(b[:8], root, path, user)
	b[8] = 0x80 | m[0]&0x3f
	copy(b[9:], m[1:8])
	return protocol.NewSessionID(b), nil
}

// idMAC returns the HMAC of an id's first 8 bytes (nonce and hour) and
// what the id stands for.
func (s *Store) idMAC(head []byte, root, path, user string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("bits session id\x00"))
	m.Write(head)
	for _, v := range []string{root, path, user} {
		m.Write([]byte(v))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// verifyID reports whether id was minted by this store for the
// destination and user, within maxAge of now, and returns when it was
// made (to the hour).
func (s *Store) verifyID(id protocol.SessionID, root, path, user string, now time.Time, maxAge time.Duration) (time.Time, bool) {
	b := id.Bytes()
	if b[6]>>4 != 4 || b[8]>>6 != 2 {
		return time.Time{}, false
	}
	m := s.idMAC(b[:8], root, path, user)
	if b[8]&0x3f != m[0]&0x3f || !hmac.Equal(b[9:], m[1:8]) {
		return time.Time{}, false
	}
	hour := int64(b[6]&0x0f)<<8 | int64(b[7])
	nowHour := now.Unix() / 3600
	age := (nowHour%idHours - hour + idHours) % idHours
	// The id is at most age+1 hours old: refuse it unless that is within
	// maxAge.
	if time.Duration(age+1)*time.Hour > maxAge {
		return time.Time{}, false
	}
	return time.Unix((nowHour-age)*3600, 0), true
}

// Revive makes again a session that this store created and lost before
// it held any byte (in a process crash, or reaped as empty), from the id
// its client sent and the destination and user of the request: id must
// have been minted for exactly those, within the session timeout (and the
// time closed sessions are remembered), and not closed since. It fails with ErrNotFound when it cannot, and with
// ErrLimitReached past info.MaxPerOwner. A session the store holds is
// returned as it is.
func (s *Store) Revive(id protocol.SessionID, info CreateInfo) (*Session, error) {
	if sess, err := s.Get(id); err == nil || err != ErrNotFound {
		return sess, err
	}
	if err := checkDestinationNames(info.Root, info.Path); err != nil {
		return nil, ErrNotFound
	}
	now := s.now()
	// Never past the tombstones' memory: a closed session must not come
	// back.
	created, ok := s.verifyID(id, info.Root, info.Path, info.User, now, min(s.Timeout(), s.tombstoneTTL()))
	if !ok || s.journal.closed(id) {
		return nil, ErrNotFound
	}
	st := s.newState(id, info, now)
	st.Created = created
	return s.register(st, info.MaxPerOwner)
}
