package session

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkWrite1MiBFragments measures the fragment path: each iteration
// uploads 64 MiB to a new session in 1 MiB fragments (including its
// checkpoints and digest), then removes the session untimed.
func BenchmarkWrite1MiBFragments(b *testing.B) {
	const (
		frag  = 1 << 20
		total = 64 << 20
	)
	store := openStore(b, "", Options{})
	root := b.TempDir()
	chunk := randBytes(70, frag)
	ctx := context.Background()
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sess := create(b, store, root, "bench.bin")
		b.StartTimer()
		for off := int64(0); off < total; off += frag {
			l, err := store.Acquire(ctx, sess.ID(), nil)
			if err != nil {
				b.Fatal(err)
			}
			res, err := l.Write(rng(off, off+frag-1, total), bytes.NewReader(chunk), WriteOptions{})
			l.Release()
			if err != nil || res.Written != frag {
				b.Fatalf("Write at %d: %+v, %v", off, res, err)
			}
		}
		b.StopTimer()
		if !sess.State().Complete() || len(sess.Digest()) == 0 {
			b.Fatal("upload not complete")
		}
		if _, err := store.Remove(ctx, sess.ID(), RemovedClosed); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
