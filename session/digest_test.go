package session

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestNoDigestUnlessAsked: a session created without Digest computes no
// SHA-256 while it is written; a notification that asks for the digest
// after all gets it computed from the held bytes, and checkpoints carry
// no hash state.
func TestNoDigestUnlessAsked(t *testing.T) {
	store := openStore(t, "", Options{CheckpointBytes: 1000})
	sess, err := store.Create(CreateInfo{Root: t.TempDir(), Path: "f.bin"})
	if err != nil {
		t.Fatal(err)
	}
	content := randBytes(41, 5000)
	mustWrite(t, sess, content, 0, 2999)
	waitCheckpoint(t, sess)
	if d := diskState(t, sess); d.HashOffset != 3000 || len(d.HashState) != 0 || d.Hash {
		t.Fatalf("checkpoint without hashing: hash_offset %d, hash state %d bytes, hash %v", d.HashOffset, len(d.HashState), d.Hash)
	}
	mustWrite(t, sess, content, 3000, 4999)
	if got := sess.Digest(); len(got) != 0 {
		t.Fatalf("digest %x computed although nobody asked", got)
	}
	var got []byte
	var saved *State
	_, err = settle(t, sess, SettleOptions{Notify: func(_ context.Context, d *Delivery) (FinalInfo, error) {
		var err error
		if got, err = d.Digest(); err != nil {
			return FinalInfo{}, err
		}
		saved = diskState(t, sess)
		return FinalInfo{}, nil
	}})
	if err != nil || !bytes.Equal(got, sha(content)) {
		t.Fatalf("Delivery.Digest = %x, Settle = %v; want %x", got, err, sha(content))
	}
	if !bytes.Equal(saved.Digest, sha(content)) {
		t.Fatalf("state file digest %x right after Delivery.Digest, want %x", saved.Digest, sha(content))
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Session.Digest %x after the notification", sess.Digest())
	}
	// Incomplete sessions have no digest to give: they are not delivered.
	other, _ := store.Create(CreateInfo{Root: t.TempDir(), Path: "g.bin"})
	mustWrite(t, other, content, 0, 99)
	calls := 0
	if _, err := settle(t, other, SettleOptions{Notify: notifyWith(FinalInfo{}, &calls)}); !errors.Is(err, ErrIncomplete) || calls != 0 {
		t.Fatalf("Settle of an incomplete upload = %v with %d notifications, want ErrIncomplete and none", err, calls)
	}
	if d := other.Digest(); d != nil {
		t.Fatalf("incomplete upload has digest %x", d)
	}
}
