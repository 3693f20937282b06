package protocol

import (
	"fmt"
	"strings"
)

// UploadProtocol is the GUID of the BITS 1.5 upload protocol, the only
// protocol Windows clients offer, in the lower case IIS answers with.
const UploadProtocol = "{7df0354d-249b-430f-820d-3d2a9bef4931}"

// MaxSupportedProtocols is the most entries a BITS-Supported-Protocols
// header may list; Windows clients send at most 100 ([MC-BUP] note 6).
const MaxSupportedProtocols = 100

// ParseSupportedProtocols parses a BITS-Supported-Protocols value: one or
// more braced GUIDs, most preferred first, separated by spaces, tabs or
// commas (MSDN says spaces, [MC-BUP] allows commas). The GUIDs are returned
// in canonical lower case. An empty list, an entry that is not a braced
// GUID, or more than MaxSupportedProtocols entries is an error.
func ParseSupportedProtocols(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == ','
	})
	if len(fields) == 0 {
		return nil, fmt.Errorf("no protocol listed")
	}
	if len(fields) > MaxSupportedProtocols {
		return nil, fmt.Errorf("%d protocols listed, at most %d allowed", len(fields), MaxSupportedProtocols)
	}
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		id, err := ParseSessionID(f)
		if err != nil {
			return nil, fmt.Errorf("protocol %.50q is not a braced GUID", f)
		}
		out = append(out, string(id))
	}
	return out, nil
}

// NegotiateProtocol returns the first protocol of the client's list that
// the server supports, or false when there is none in common.
func NegotiateProtocol(offered []string) (string, bool) {
	for _, p := range offered {
		if p == UploadProtocol {
			return p, true
		}
	}
	return "", false
}
