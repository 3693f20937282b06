package session

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// stateVersion is written into every state file; files of other versions
// are not loaded.
const stateVersion = 1

// State is the metadata of a session, as persisted in its state.json and
// as reported to callers.
type State struct {
	Version int                `json:"version"`
	ID      protocol.SessionID `json:"id"`

	// Root is the absolute upload root the destination lives in, and Path
	// the destination relative to it, slash separated.
	Root string `json:"root"`
	Path string `json:"path"`
	// URL is the absolute URL the session was created at (the job's
	// remote name).
	URL string `json:"url,omitempty"`
	// User is the authenticated user who created the session, if any;
	// Client is the address of the client that created it.
	User   string `json:"user,omitempty"`
	Client string `json:"client,omitempty"`

	Created      time.Time `json:"created"`
	LastActivity time.Time `json:"last_activity"`

	// Total is the upload's length, fixed by its first fragment; -1 until
	// then. Received is the number of bytes held.
	Total    int64 `json:"total"`
	Received int64 `json:"received"`

	// Hash is set when the SHA-256 of the upload is computed while its
	// fragments are written (when a digest will be needed); otherwise the
	// digest is computed from the data file only if it is asked for.
	Hash bool `json:"hash,omitempty"`

	// HashOffset is the checkpointed length: the data file is known to be
	// durable up to it, and HashState, when set, is the SHA-256 state over
	// exactly those bytes. BootID is the boot under which every byte past
	// the checkpoint was written.
	HashOffset int64  `json:"hash_offset"`
	HashState  []byte `json:"hash_state,omitempty"`
	BootID     string `json:"boot_id,omitempty"`

	// Digest is the SHA-256 of the complete upload.
	Digest []byte `json:"digest,omitempty"`
	// Committed is set once the upload was placed at its destination.
	Committed bool `json:"committed,omitempty"`
	// Final is the outcome of finishing the session, recorded as soon as
	// it is decided (for a notification: once the server application
	// answered), so that it is never decided twice. Finished is set once
	// everything it asks for is done and the final Ack is settled.
	Finished bool       `json:"finished,omitempty"`
	Final    *FinalInfo `json:"final,omitempty"`
	// DataDiscarded is set once the data file was deleted after the
	// session finished; Received then stays at Total.
	DataDiscarded bool `json:"data_discarded,omitempty"`
}

// FinalInfo is what the final Ack of a finished session carries, cached so
// a repeated final fragment is answered identically without doing the work
// again.
type FinalInfo struct {
	// ReplyURL is the BITS-Reply-URL of the final Ack, if any.
	ReplyURL string `json:"reply_url,omitempty"`
	// ReplyStatic is true when ReplyURL points elsewhere (a static
	// response URL) rather than at the session's reply file.
	ReplyStatic bool `json:"reply_static,omitempty"`
	// ReplyModified is the time the reply file was stored, and ReplySize
	// its length.
	ReplyModified time.Time `json:"reply_modified,omitzero"`
	ReplySize     int64     `json:"reply_size,omitempty"`
	// Commit is set when the upload is to be placed at its destination.
	Commit bool `json:"commit,omitempty"`
}

// Owner returns who the session counts against in per-user limits: its
// authenticated user, or its client address when there was none.
func (s State) Owner() string {
	if s.User != "" {
		return "user:" + s.User
	}
	return "ip:" + s.Client
}

// Complete reports whether every byte of the upload is held.
func (s State) Complete() bool { return s.Total >= 0 && s.Received == s.Total }

// Destination returns the absolute destination path.
func (s State) Destination() string {
	return filepath.Join(s.Root, filepath.FromSlash(s.Path))
}

// readState loads and validates a state file.
func readState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: unsupported state version %d", path, st.Version)
	}
	if _, err := protocol.ParseSessionID(string(st.ID)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Root == "" || st.Path == "" || st.Total < -1 || st.HashOffset < 0 {
		return nil, fmt.Errorf("%s: inconsistent state", path)
	}
	return &st, nil
}

// createState writes the state file of a new session. It needs no
// temporary file: until it is complete the session does not exist for
// anybody, and a file cut short by a crash is unreadable, so recovery
// discards the session.
func createState(dir string, st *State) error {
	st.Version = stateVersion
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding session state: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, stateFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing session state: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing session state: %w", err)
	}
	return nil
}

// writeState replaces a state file atomically: it writes a temporary file
// next to it and renames it over the old one. With durable set, the
// temporary file and then the directory are fsynced, so the new state
// survives power loss.
func writeState(dir string, st *State, durable bool) error {
	st.Version = stateVersion
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding session state: %w", err)
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("writing session state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err == nil && durable {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing session state: %w", err)
	}
	return nil
}
