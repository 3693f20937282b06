package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// stateVersion is written into every state; states of other versions are
// not loaded (version 1, the layout with a directory per session, is
// migrated when the store opens).
const stateVersion = 2

// State is the metadata of a session, as persisted and as reported to
// callers.
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
	// digest is computed from the held bytes only if it is asked for.
	Hash bool `json:"hash,omitempty"`

	// HashOffset is the checkpointed length: the held bytes are known to
	// be durable up to it, and HashState, when set, is the SHA-256 state
	// over exactly those bytes. BootID is the boot under which every byte
	// past the checkpoint was written.
	HashOffset int64  `json:"hash_offset"`
	HashState  []byte `json:"hash_state,omitempty"`
	BootID     string `json:"boot_id,omitempty"`

	// Data is the storage's own record of where the session's bytes are
	// (see [Journal]).
	Data json.RawMessage `json:"data,omitempty"`

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
	// DataDiscarded is set once the held bytes were deleted after the
	// session finished (or were never held, for an upload placed
	// straight from its only fragment); Received then stays at Total.
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

// Destination returns where the upload is placed.
func (s State) Destination() Destination { return Destination{Root: s.Root, Path: s.Path} }

// DestinationPath returns the absolute destination path.
func (s State) DestinationPath() string { return s.Destination().String() }

// validate checks what a state must be to be loaded, whoever wrote it:
// its destination is exactly what Create accepts, so that a state file
// can never point a recovered session outside an upload root.
func (s *State) validate() error {
	if s.Version != stateVersion {
		return fmt.Errorf("unsupported state version %d", s.Version)
	}
	if _, err := protocol.ParseSessionID(string(s.ID)); err != nil {
		return err
	}
	if err := checkDestinationNames(s.Root, s.Path); err != nil {
		return err
	}
	if s.Total < -1 || s.Received < 0 || s.HashOffset < 0 || (s.Total >= 0 && s.Received > s.Total) {
		return errors.New("inconsistent state")
	}
	return nil
}

// MaxNameLength is the longest name of one path component the store
// accepts, in bytes, as most file systems allow (NAME_MAX).
const MaxNameLength = 255

// checkDestinationNames checks a destination as Create does: an absolute,
// clean root, and a relative slash-separated path of names that are valid
// UTF-8, not "." or "..", free of separators and control characters, and
// at most MaxNameLength bytes each.
func checkDestinationNames(root, rel string) error {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root {
		return fmt.Errorf("%w: root %q is not an absolute, clean path", ErrInvalidDestination, root)
	}
	if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel {
		return fmt.Errorf("%w: path %q is not a clean relative path", ErrInvalidDestination, rel)
	}
	for name := range strings.SplitSeq(rel, "/") {
		switch {
		case name == "." || name == ".." || name == "":
			return fmt.Errorf("%w: path %q has a %q name", ErrInvalidDestination, rel, name)
		case len(name) > MaxNameLength:
			return fmt.Errorf("%w: a name of %d bytes (the limit is %d)", ErrInvalidName, len(name), MaxNameLength)
		case !utf8.ValidString(name):
			return fmt.Errorf("%w: a name that is not valid UTF-8", ErrInvalidName)
		case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }):
			return fmt.Errorf("%w: a name with a control character or backslash", ErrInvalidName)
		}
	}
	return nil
}

// envelope is how a state is stored: the state's JSON and an HMAC of it
// under the store's key, so that a state file the store did not write (one
// planted by an upload, say) is refused.
type envelope struct {
	MAC   []byte          `json:"mac"`
	State json.RawMessage `json:"state"`
}

// seal encodes a state in its envelope.
func seal(key []byte, st *State) ([]byte, error) {
	st.Version = stateVersion
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encoding session state: %w", err)
	}
	// The envelope as json.Marshal writes it, without encoding (and
	// compacting) the already compact state a second time.
	sum := mac(key, raw)
	b := make([]byte, 0, len(`{"mac":"","state":}`)+base64.StdEncoding.EncodedLen(len(sum))+len(raw))
	b = append(b, `{"mac":"`...)
	b = base64.StdEncoding.AppendEncode(b, sum)
	b = append(b, `","state":`...)
	b = append(b, raw...)
	return append(b, '}'), nil
}

// unseal decodes a state from its envelope, checking its HMAC and its
// content.
func unseal(key, b []byte) (*State, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("decoding session state: %w", err)
	}
	if !hmac.Equal(env.MAC, mac(key, env.State)) {
		return nil, errors.New("session state was not written by this store")
	}
	var st State
	if err := json.Unmarshal(env.State, &st); err != nil {
		return nil, fmt.Errorf("decoding session state: %w", err)
	}
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("session state: %w", err)
	}
	return &st, nil
}

func mac(key, b []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)
}

// stateSuffix ends the name of a session's state file.
const stateSuffix = ".json"

// readStateFile loads a state file, which must be a regular file.
func readStateFile(key []byte, name string) (*State, error) {
	fi, err := os.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	st, err := unseal(key, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return st, nil
}

// writeStateFile replaces a state file atomically: it writes a temporary
// file next to it and renames it over the old one. With syncData the
// temporary file is fsynced before the rename, so that the new state
// cannot reach the disk as an empty or partial file; with syncDir the
// directory is fsynced after it, so that the new state survives a power
// loss.
func writeStateFile(name string, b []byte, syncData, syncDir bool, fsync func(*os.File) error) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing session state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil && syncData {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil && syncDir {
		err = syncDirOf(name, fsync)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing session state: %w", err)
	}
	return nil
}

// syncDirOf fsyncs the directory that holds name.
func syncDirOf(name string, fsync func(*os.File) error) error {
	return syncDir(filepath.Dir(name), fsync)
}

// removeFile deletes a file that may not exist.
func removeFile(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// sealRecord encodes the R line of a session (see journal): its storage
// record and the upload's total, with an HMAC under the store's key.
func sealRecord(key []byte, id protocol.SessionID, total int64, rec json.RawMessage) string {
	body := id.Bare() + " " + strconv.FormatInt(total, 10) + " " + string(rec)
	return id.Bare() + " " + hex.EncodeToString(mac(key, []byte("R "+body))) + " " + strconv.FormatInt(total, 10) + " " + string(rec)
}

// unsealRecord decodes an R line of the session id, checking its HMAC.
func unsealRecord(key []byte, id protocol.SessionID, line string) (total int64, rec json.RawMessage, err error) {
	guid, rest, _ := strings.Cut(line, " ")
	sum, rest, _ := strings.Cut(rest, " ")
	totalStr, recStr, _ := strings.Cut(rest, " ")
	want, err := hex.DecodeString(sum)
	if err != nil || guid != id.Bare() {
		return 0, nil, errors.New("malformed record line")
	}
	if !hmac.Equal(want, mac(key, []byte("R "+guid+" "+totalStr+" "+recStr))) {
		return 0, nil, errors.New("record line was not written by this store")
	}
	total, err = strconv.ParseInt(totalStr, 10, 64)
	if err != nil || total < -1 || !json.Valid([]byte(recStr)) {
		return 0, nil, errors.New("malformed record line")
	}
	return total, json.RawMessage(recStr), nil
}
