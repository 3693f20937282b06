package session

import (
	"errors"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestFinish settles a delivered upload: its outcome is the final Ack
// that a repeated final fragment gets, before and after a restart.
func TestFinish(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(50, 2000)
	sess := create(t, store, "", "f.bin")
	info := FinalInfo{ReplyURL: "https://example.com/reply/abc", ReplyModified: time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)}
	calls := 0
	finish := func() (Settlement, error) {
		t.Helper()
		return settle(t, sess, SettleOptions{Notify: notifyWith(info, &calls)})
	}

	if _, err := finish(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Settle before any fragment = %v, want ErrIncomplete", err)
	}
	mustWrite(t, sess, content, 0, 999)
	if _, err := finish(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Settle of an incomplete upload = %v, want ErrIncomplete", err)
	}
	if calls != 0 {
		t.Fatalf("an incomplete upload was delivered %d times", calls)
	}
	if _, ok := sess.Finished(); ok || sess.State().Finished || diskState(t, sess).Finished {
		t.Fatal("failed Settle marked the session finished")
	}

	mustWrite(t, sess, content, 1000, 1999)
	if _, ok := sess.Finished(); ok {
		t.Fatal("complete but unfinished session reports Finished")
	}
	res, err := finish()
	if err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if !res.Notified || res.Cached || res.Placed || calls != 1 || res.Final != info {
		t.Fatalf("Settle = %+v after %d notifications; want one notification answered with %+v", res, calls, info)
	}
	if got, ok := sess.Finished(); !ok || got.ReplyURL != info.ReplyURL || !got.ReplyModified.Equal(info.ReplyModified) || got.ReplyStatic {
		t.Fatalf("Finished = %+v, %v; want %+v", got, ok, info)
	}
	// A delivered upload's bytes are deleted once the outcome is on disk,
	// so the state file says finished when Settle returns.
	if d := diskState(t, sess); !d.Finished || d.Final == nil || d.Final.ReplyURL != info.ReplyURL || !d.DataDiscarded {
		t.Fatalf("state file after Settle: finished %v, final %+v, data discarded %v", d.Finished, d.Final, d.DataDiscarded)
	}
	mustNotExist(t, dataPath(sess))
	if res, err := finish(); err != nil || !res.Cached || res.Notified || calls != 1 {
		t.Fatalf("Settle again = %+v, %v after %d notifications; want the cached answer", res, err, calls)
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
	sess, err = store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := sess.Finished(); !ok || got.ReplyURL != info.ReplyURL || !got.ReplyModified.Equal(info.ReplyModified) {
		t.Fatalf("Finished after reopen = %+v, %v; want %+v", got, ok, info)
	}
	if res, err := finish(); err != nil || !res.Cached || calls != 1 {
		t.Fatalf("Settle after reopen = %+v, %v after %d notifications; want the cached answer", res, err, calls)
	}
}

// TestFinishPlacedStaysInMemory: an upload placed without a notification
// is finished in memory only, because recovery recognises the placed
// upload by its link; the state is written with the next update or a
// clean shutdown.
func TestFinishPlacedStaysInMemory(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(51, 3000)
	sess := completed(t, store, root, "f.bin", content)
	if err := commit(t, sess, false); err != nil {
		t.Fatal(err)
	}
	if info, ok := sess.Finished(); !ok || !info.Commit {
		t.Fatalf("Finished = %+v, %v", info, ok)
	}
	if d := diskState(t, sess); d.Finished || d.Committed {
		t.Fatalf("state file after placing says finished %v, committed %v; placing is not meant to write it", d.Finished, d.Committed)
	}
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if d := diskStateAt(t, storeKey(t, dir), statePathIn(dir, id)); !d.Finished || !d.Committed {
		t.Fatalf("state file after a clean shutdown: finished %v, committed %v", d.Finished, d.Committed)
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
