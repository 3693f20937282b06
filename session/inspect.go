package session

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Stored returns the ids of the sessions stored in the store directory dir,
// as the next Open would find them, without opening it: those with files
// in its active directory and those the journal holds a state of, less
// those the journal records as closed. It checks no seal, and reads a
// directory that may be in use, so it is for diagnostics and tests.
func Stored(dir string) ([]protocol.SessionID, error) {
	ids := make(map[protocol.SessionID]bool)
	entries, err := os.ReadDir(filepath.Join(dir, activeName))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("reading session directory: %w", err)
	}
	for _, e := range entries {
		guid, _, _ := strings.Cut(e.Name(), ".")
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if id, err := protocol.ParseSessionID("{" + guid + "}"); err == nil {
			ids[id] = true
		}
	}
	j := &journal{
		max:     1 << 30,
		tombs:   make(map[protocol.SessionID]time.Time),
		states:  make(map[protocol.SessionID][]byte),
		records: make(map[protocol.SessionID]string),
	}
	for _, name := range []string{oldClosedFile, journalFile} {
		if err := j.load(filepath.Join(dir, name), time.Time{}); err != nil {
			return nil, err
		}
	}
	for id := range j.states {
		ids[id] = true
	}
	for id := range j.tombs {
		delete(ids, id)
	}
	out := make([]protocol.SessionID, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}
