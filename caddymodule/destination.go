package caddymodule

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// rootTemplate is the root option, parsed once at provision.
//
// A root without placeholders is static. In a root with placeholders,
// each placeholder stands for one path name and must expand to a single
// name: not empty, not "." or "..", without a slash, a backslash or a
// control character. So a root such as /srv/tenants/{http.request.header.X-Tenant}
// always stays below its fixed part, /srv/tenants, and a request cannot
// choose another directory with "../..", nor share /srv/tenants itself
// with an empty value. The one exception is a placeholder at the very
// start, such as the default {http.vars.root}: it names a whole directory
// that the configuration chose (the root directive), and must expand to a
// path without ".." or control characters; empty means the working
// directory, as for file_server.
type rootTemplate struct {
	raw    string
	static string // the absolute root, when raw has no placeholders
	fixed  string // the directory every expansion stays below, if any
}

// parseRootTemplate parses the root option.
func parseRootTemplate(raw string) (*rootTemplate, error) {
	t := &rootTemplate{raw: raw}
	i := strings.IndexByte(raw, '{')
	if i < 0 {
		abs, err := caddy.FastAbs(raw)
		if err != nil {
			return nil, fmt.Errorf("resolving root %q: %v", raw, err)
		}
		t.static = abs
		return t, nil
	}
	if i > 0 {
		prefix := raw[:i]
		if !filepath.IsAbs(prefix) {
			return nil, fmt.Errorf("root %q must be an absolute path, or start with a placeholder", raw)
		}
		// The directory that holds the first name with a placeholder.
		t.fixed = filepath.Clean(prefix[:strings.LastIndexAny(prefix, `/\`)+1])
	}
	return t, nil
}

// expand returns the root of a request: the template with each
// placeholder checked and expanded (see rootTemplate). A value that breaks
// the rules is the client's error, named in a 400 Ack.
func (t *rootTemplate) expand(repl *caddy.Replacer) (string, error) {
	if t.static != "" {
		return t.static, nil
	}
	first := true
	out, err := repl.ReplaceFunc(t.raw, func(variable string, val any) (any, error) {
		s := caddy.ToString(val)
		whole := first && t.fixed == ""
		first = false
		if whole {
			if s == "" {
				return ".", nil // the working directory, as file_server has it
			}
			if slices.Contains(strings.Split(filepath.ToSlash(s), "/"), "..") || strings.ContainsFunc(s, isControl) {
				return nil, fmt.Errorf("root placeholder {%s} expands to %.80q, which is not a plain directory path", variable, s)
			}
			return s, nil
		}
		if reason := badName(s); reason != "" {
			return nil, fmt.Errorf("root placeholder {%s} expands to %.80q, %s", variable, s, reason)
		}
		return s, nil
	})
	if err != nil {
		return "", err
	}
	root, err := caddy.FastAbs(out)
	if err != nil {
		return "", fmt.Errorf("resolving root %.120q: %v", out, err)
	}
	if t.fixed != "" && (root == t.fixed || !within(t.fixed, root)) {
		return "", fmt.Errorf("root %.120q is not below %s", out, t.fixed)
	}
	return root, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// badName says why s cannot be one path name, or returns "".
func badName(s string) string {
	switch {
	case s == "":
		return "which is empty"
	case s == "." || s == "..":
		return "which names no directory of its own"
	case strings.ContainsAny(s, `/\`):
		return "which contains a path separator"
	case strings.ContainsFunc(s, isControl):
		return "which contains a control character"
	case len(s) > protocol.MaxNameLength:
		return "which is longer than a file name may be"
	}
	return ""
}

// resolveRoot resolves the symbolic links of a root and checks that it
// and the session directory are apart. It returns the resolved root.
func (h *Handler) resolveRoot(root string) (string, error) {
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("resolving root %s: %w", root, err)
	}
	if err := checkSeparate(resolved, h.sessionDir); err != nil {
		return "", err
	}
	return resolved, nil
}

// destination maps a request to its upload destination: the absolute root
// and the path relative to it. Like file_server, it joins the root with
// the request path, but it refuses rather than cleans anything that could
// leave the root: "." and ".." segments, encoded slashes and backslashes,
// control characters, empty segments, names longer than a file system
// allows, and on Windows alternate data streams, short names and reserved
// names. A root with placeholders is checked as rootTemplate describes,
// and, like every root, must not overlap the session directory once
// symbolic links are resolved.
func (h *Handler) destination(r *http.Request) (root, rel string, err error) {
	rel, err = protocol.CleanRemotePath(r.URL.EscapedPath())
	if err != nil {
		if errors.Is(err, protocol.ErrDirectoryTarget) {
			return "", "", protocol.BadRequest("%v", err)
		}
		return "", "", protocol.BadRequest("invalid destination: %v", err)
	}
	if _, err := filepath.Localize(rel); err != nil {
		return "", "", protocol.BadRequest("invalid destination %q for this system", rel)
	}
	if runtime.GOOS == "windows" && (strings.Contains(rel, ":") || caddyhttp.HasWindowsShortName(rel)) {
		return "", "", protocol.BadRequest("invalid destination %q for this system", rel)
	}
	if h.root.static != "" || !h.storage.Local() {
		return h.root.static, rel, nil
	}
	root, err = h.root.expand(replacer(r))
	if err != nil {
		return "", "", protocol.BadRequest("%v", err)
	}
	if _, err := h.resolveRoot(root); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", protocol.Errorf(http.StatusNotFound, protocol.ErrorPathNotFound, "upload root does not exist: %v", err)
		}
		return "", "", protocol.Errorf(http.StatusForbidden, protocol.EAccessDenied, "%v", err)
	}
	return root, rel, nil
}

// requestURL returns the absolute URL of a request, as the client sent it.
func requestURL(r *http.Request) *url.URL {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := *r.URL
	u.Scheme, u.Host = scheme, r.Host
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		u.Path, u.RawPath, u.RawQuery = orig.URL.Path, orig.URL.RawPath, orig.URL.RawQuery
	}
	return &u
}
