package session

import (
	"errors"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestFinish(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(50, 2000)
	sess := create(t, store, "", "f.bin")
	finish := func(info FinalInfo) error {
		t.Helper()
		if err := sess.Lock(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer sess.Unlock()
		return sess.Finish(info)
	}

	if err := finish(FinalInfo{ReplyURL: "early"}); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Finish before any fragment = %v, want ErrIncomplete", err)
	}
	mustWrite(t, sess, content, 0, 999)
	if err := finish(FinalInfo{ReplyURL: "early"}); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Finish of an incomplete upload = %v, want ErrIncomplete", err)
	}
	if _, ok := sess.Finished(); ok || sess.State().Finished || diskState(t, sess).Finished {
		t.Fatal("failed Finish marked the session finished")
	}

	mustWrite(t, sess, content, 1000, 1999)
	if _, ok := sess.Finished(); ok {
		t.Fatal("complete but unfinished session reports Finished")
	}
	info := FinalInfo{ReplyURL: "https://example.com/reply/abc", ReplyModified: time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)}
	if err := finish(info); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if got, ok := sess.Finished(); !ok || got.ReplyURL != info.ReplyURL || !got.ReplyModified.Equal(info.ReplyModified) || got.ReplyStatic {
		t.Fatalf("Finished = %+v, %v; want %+v", got, ok, info)
	}
	// Finish stays in memory until the next state update or a clean
	// shutdown (checked after the store is closed below).
	if d := diskState(t, sess); d.Finished {
		t.Fatalf("state.json after Finish already says finished; Finish is not meant to write")
	}
	// A retransmitted final fragment leaves the finished state alone.
	if res, err := writeBody(t, sess, rng(1000, 1999, 2000), unreadable{t}); err != nil || !res.Complete || res.Action != protocol.AlreadyHeld {
		t.Fatalf("final fragment again: %+v, %v", res, err)
	}
	if _, ok := sess.Finished(); !ok {
		t.Fatal("retransmission cleared Finished")
	}

	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := sess.Finished(); !ok || got.ReplyURL != info.ReplyURL || !got.ReplyModified.Equal(info.ReplyModified) {
		t.Fatalf("Finished after reopen = %+v, %v; want %+v", got, ok, info)
	}
}

func TestListAndLen(t *testing.T) {
	clock := newFakeClock()
	store := openStore(t, "", Options{Now: clock.Now})
	if got := store.List(); len(got) != 0 || store.Len() != 0 {
		t.Fatalf("empty store: List %v, Len %d", got, store.Len())
	}
	root := t.TempDir()
	// Created out of id order, at distinct times, plus two at one instant.
	var want []protocol.SessionID
	for i := 0; i < 5; i++ {
		want = append(want, create(t, store, root, "f.bin").ID())
		clock.Advance(time.Second)
	}
	a := create(t, store, root, "f.bin").ID()
	b := create(t, store, root, "f.bin").ID()
	if b < a {
		a, b = b, a
	}
	want = append(want, a, b) // same Created: ordered by id

	got := store.List()
	if len(got) != len(want) || store.Len() != len(want) {
		t.Fatalf("List has %d, Len %d, want %d", len(got), store.Len(), len(want))
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Fatalf("List[%d] = %s, want %s (oldest first)", i, got[i].ID, want[i])
		}
		if got[i].HashState != nil {
			t.Errorf("List[%d] exposes the hash state", i)
		}
	}
	if _, err := store.Remove(t.Context(), want[2], RemovedClosed); err != nil {
		t.Fatal(err)
	}
	got = store.List()
	if len(got) != len(want)-1 || store.Len() != len(want)-1 {
		t.Fatalf("after Remove: List %d, Len %d", len(got), store.Len())
	}
	for _, st := range got {
		if st.ID == want[2] {
			t.Fatal("removed session still listed")
		}
	}
}
