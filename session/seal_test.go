package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSealRoundTrip: a sealed state unseals with its key, and with no
// other; a state changed after sealing is refused.
func TestSealRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	other := bytes.Repeat([]byte{2}, 32)
	store := openStore(t, "", Options{})
	st := create(t, store, t.TempDir(), "f.bin").State()
	b, err := seal(key, &st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := unseal(key, b)
	if err != nil || got.ID != st.ID || got.Path != st.Path || got.Root != st.Root {
		t.Fatalf("unseal(seal(st)) = %+v, %v", got, err)
	}
	if _, err := unseal(other, b); err == nil {
		t.Fatal("a state unsealed with another key")
	}
	tampered := bytes.Replace(b, []byte(`"path":"f.bin"`), []byte(`"path":"g.bin"`), 1)
	if bytes.Equal(tampered, b) {
		t.Fatal("test setup: nothing replaced")
	}
	if _, err := unseal(key, tampered); err == nil {
		t.Fatal("a state changed after sealing was accepted")
	}
}

// TestSealEnvelopeEncoding: seal writes its envelope by hand; the bytes
// must be exactly those encoding/json writes for the envelope, for names
// and URLs with characters that JSON escapes.
func TestSealEnvelopeEncoding(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 32)
	store := openStore(t, "", Options{})
	st := create(t, store, t.TempDir(), "a<b>&\u00e9\"q\".bin").State()
	st.URL = "http://h/a<b>&%22?x=\u2028"
	st.User = "dom\\user"
	b, err := seal(key, &st)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(envelope{MAC: mac(key, raw), State: raw})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("seal wrote\n%s\nencoding/json writes\n%s", b, want)
	}
	got, err := unseal(key, b)
	if err != nil || got.Path != st.Path || got.URL != st.URL || got.User != st.User {
		t.Fatalf("unseal = %+v, %v", got, err)
	}
}

// TestSealRefusesForeignStates: a state the store did not write is
// refused at Open, and the session's files are deleted, whether it is
// sealed with another key, not sealed at all, or sealed but naming a
// destination Create would refuse.
func TestSealRefusesForeignStates(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(36, 100)
	mk := func(rel string) *Session {
		s := create(t, store, root, rel)
		mustWrite(t, s, content, 0, 49)
		return s
	}
	good := mk("good.bin")
	otherKey := mk("other-key.bin")
	bare := mk("bare.bin")
	dotdot := mk("dotdot.bin")
	long := mk("long.bin")
	relRoot := mk("rel-root.bin")
	control := mk("control.bin")
	journaled := create(t, store, root, "journaled.bin")
	// Its state is a journal line, as one placed straight has.
	if err := journaled.journalState(); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	key := storeKey(t, dir)
	foreignKey := bytes.Repeat([]byte{0x5a}, 32)

	// Sealed with a key that is not the store's.
	b, err := os.ReadFile(statePathIn(dir, otherKey.ID()))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, statePathIn(dir, otherKey.ID()), editSealed(t, foreignKey, b, func(map[string]any) {}))
	// The bare state, valid JSON without its envelope.
	st := otherKey.State()
	st.ID = bare.ID()
	raw, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, statePathIn(dir, bare.ID()), raw)
	// Sealed with the store's key, but naming what Create refuses.
	editState(t, key, statePathIn(dir, dotdot.ID()), func(m map[string]any) { m["path"] = "../outside.bin" })
	editState(t, key, statePathIn(dir, long.ID()), func(m map[string]any) { m["path"] = "a/" + strings.Repeat("n", 256) })
	editState(t, key, statePathIn(dir, relRoot.ID()), func(m map[string]any) { m["root"] = "relative/root" })
	editState(t, key, statePathIn(dir, control.ID()), func(m map[string]any) { m["path"] = "f\x01.bin" })
	// A journal line sealed with another key.
	lines := journalLines(t, dir)
	n := 0
	for i, line := range lines {
		if rest, ok := strings.CutPrefix(line, "S "); ok {
			if id, _ := sealedID(rest); id == journaled.ID() {
				lines[i] = "S " + string(editSealed(t, foreignKey, []byte(rest), func(map[string]any) {}))
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("test setup: no journal line for the session without bytes")
	}
	writeFile(t, filepath.Join(dir, journalFile), []byte(strings.Join(lines, "\n")+"\n"))

	store = openStore(t, dir, Options{})
	if _, err := store.Get(good.ID()); err != nil {
		t.Fatalf("the session with its own state: %v", err)
	}
	mustExist(t, statePathIn(dir, good.ID()))
	for name, s := range map[string]*Session{
		"another key": otherKey, "no envelope": bare, "parent name": dotdot, "name of 256 bytes": long,
		"relative root": relRoot, "control character": control, "journal line with another key": journaled,
	} {
		if _, err := store.Get(s.ID()); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Get = %v, want ErrNotFound", name, err)
		}
		mustHaveNoFiles(t, dir, s.ID())
		if journalState(t, dir, key, s.ID()) != nil {
			t.Errorf("%s: the journal still holds its state", name)
		}
	}
	if store.Len() != 1 {
		t.Errorf("Len = %d, want 1", store.Len())
	}
	mustNotExist(t, filepath.Join(filepath.Dir(root), "outside.bin"))
}
