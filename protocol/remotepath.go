package protocol

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrDirectoryTarget is returned by [CleanRemotePath] when the request path
// names a directory (it is empty or ends with a slash).
var ErrDirectoryTarget = errors.New("request path names a directory, not a file")

// MaxRemotePathLength is the longest escaped request path accepted as an
// upload destination.
const MaxRemotePathLength = 4096

// MaxNameLength is the longest decoded path segment accepted, in bytes:
// the name length (NAME_MAX) of common file systems.
const MaxNameLength = 255

// CleanRemotePath turns the escaped path of a BITS request URL (the job's
// remote name) into a slash-separated path relative to the upload root,
// such as "reports/2026/q3.bin".
//
// Each segment is percent-decoded on its own. The path is refused when any
// segment is "." or "..", when a segment decodes to something containing a
// slash, a backslash, a NUL or another control character (encoded slashes
// and backslashes could otherwise smuggle in separators), when a segment
// is longer than MaxNameLength bytes, when a segment is
// empty ("//" or a leading "//" that would look absolute), and when the path
// is not valid percent-encoding or does not decode to valid UTF-8. A path that is empty, "/"
// or ends with "/" names a directory and yields ErrDirectoryTarget.
func CleanRemotePath(escaped string) (string, error) {
	if len(escaped) > MaxRemotePathLength {
		return "", fmt.Errorf("request path is longer than %d bytes", MaxRemotePathLength)
	}
	if escaped == "" {
		return "", ErrDirectoryTarget
	}
	if !strings.HasPrefix(escaped, "/") {
		return "", errors.New("request path is not absolute")
	}
	escaped = escaped[1:]
	if escaped == "" || strings.HasSuffix(escaped, "/") {
		return "", ErrDirectoryTarget
	}
	segments := strings.Split(escaped, "/")
	for i, seg := range segments {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return "", fmt.Errorf("request path segment %.60q is not valid percent-encoding", seg)
		}
		switch dec {
		case "":
			return "", errors.New("request path has an empty segment")
		case ".", "..":
			return "", fmt.Errorf("request path has a %q segment", dec)
		}
		for j := 0; j < len(dec); j++ {
			c := dec[j]
			switch {
			case c == '/' || c == '\\':
				return "", fmt.Errorf("request path segment %.60q contains an encoded or literal separator", seg)
			case c < 0x20 || c == 0x7f:
				return "", fmt.Errorf("request path segment %.60q contains a control character", seg)
			}
		}
		if len(dec) > MaxNameLength {
			// File systems refuse longer names (NAME_MAX); refusing
			// here answers before any byte is sent, even where the
			// parents do not exist yet.
			return "", fmt.Errorf("request path segment of %d bytes is longer than %d", len(dec), MaxNameLength)
		}
		if !utf8.ValidString(dec) {
			// On systems that store names in UTF-16, invalid sequences
			// would all collapse to U+FFFD and alias each other.
			return "", fmt.Errorf("request path segment %.60q is not valid UTF-8", seg)
		}
		segments[i] = dec
	}
	return strings.Join(segments, "/"), nil
}
