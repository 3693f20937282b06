package session

import (
	"bytes"
	"testing"
)

// TestNoDigestUnlessAsked: a session created without Digest computes no
// SHA-256 while it is written; EnsureDigest reads the file once when a
// digest is needed after all, and checkpoints carry no hash state.
func TestNoDigestUnlessAsked(t *testing.T) {
	store := openStore(t, "", Options{CheckpointBytes: 1000})
	sess, err := store.Create(CreateInfo{Root: t.TempDir(), Path: "f.bin"})
	if err != nil {
		t.Fatal(err)
	}
	content := randBytes(41, 5000)
	mustWrite(t, sess, content, 0, 2999)
	if d := diskState(t, sess); d.HashOffset != 3000 || len(d.HashState) != 0 || d.Hash {
		t.Fatalf("checkpoint without hashing: hash_offset %d, hash state %d bytes, hash %v", d.HashOffset, len(d.HashState), d.Hash)
	}
	mustWrite(t, sess, content, 3000, 4999)
	if got := sess.Digest(); len(got) != 0 {
		t.Fatalf("digest %x computed although nobody asked", got)
	}
	got, err := sess.EnsureDigest()
	if err != nil || !bytes.Equal(got, sha(content)) {
		t.Fatalf("EnsureDigest = %x, %v; want %x", got, err, sha(content))
	}
	if d := diskState(t, sess); !bytes.Equal(d.Digest, sha(content)) {
		t.Fatalf("state.json digest %x", d.Digest)
	}
	// Incomplete sessions have no digest to give.
	other, _ := store.Create(CreateInfo{Root: t.TempDir(), Path: "g.bin"})
	mustWrite(t, other, content, 0, 99)
	if _, err := other.EnsureDigest(); err == nil {
		t.Fatal("EnsureDigest of an incomplete upload succeeded")
	}
}
