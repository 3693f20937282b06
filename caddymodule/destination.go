package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// destination maps a request to its upload destination: the absolute root
// and the path relative to it. Like file_server, it joins the root with
// the request path, but it refuses rather than cleans anything that could
// leave the root: "." and ".." segments, encoded slashes and backslashes,
// control characters, empty segments, and on Windows alternate data
// streams, short names and reserved names.
func (h *Handler) destination(r *http.Request) (root, rel string, perr *protocol.Error) {
	rel, err := protocol.CleanRemotePath(r.URL.EscapedPath())
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
	root = h.staticRoot
	if root == "" {
		abs, err := caddy.FastAbs(replacer(r).ReplaceAll(h.Root, "."))
		if err != nil {
			return "", "", protocol.Errorf(http.StatusInternalServerError, protocol.EFail, "resolving root: %v", err)
		}
		root = abs
		if err := checkSeparate(root, h.store.Dir()); err != nil {
			return "", "", protocol.Errorf(http.StatusInternalServerError, protocol.EFail, "%v", err)
		}
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
