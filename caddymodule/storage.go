package caddymodule

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-bits/caddy-bits/session"
)

func init() {
	caddy.RegisterModule(LocalStorage{})
}

// Storage is implemented by the guest modules of the namespace
// http.handlers.bits_upload.storage: where the bytes of uploads in progress
// are kept, and where finished uploads are placed, as reverse_proxy takes
// its transports. "local" is the default.
type Storage interface {
	// OpenStorage returns the storage of the session store in sessionDir.
	// What it keeps on the local disk, it keeps below sessionDir.
	OpenStorage(ctx caddy.Context, sessionDir string) (session.Storage, error)
	// StorageKey names where the bytes live (not the credentials to
	// reach them), so that one session directory is never used with two
	// storages: its sessions' bytes are in one of them.
	StorageKey() string
	// Local reports whether destinations are files below the handler's
	// root on the local file system.
	Local() bool
}

// LocalStorage keeps every upload in progress in session_dir and places
// finished uploads below root, on the local file system: module
// http.handlers.bits_upload.storage.local, the default. It has no options.
type LocalStorage struct{}

// CaddyModule returns the Caddy module information.
func (LocalStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bits_upload.storage.local",
		New: func() caddy.Module { return new(LocalStorage) },
	}
}

// OpenStorage implements Storage.
func (LocalStorage) OpenStorage(_ caddy.Context, sessionDir string) (session.Storage, error) {
	return session.NewLocalStorage(filepath.Join(sessionDir, "active")), nil
}

// StorageKey implements Storage.
func (LocalStorage) StorageKey() string { return "local" }

// Local implements Storage.
func (LocalStorage) Local() bool { return true }

// UnmarshalCaddyfile sets up the module from Caddyfile tokens: `storage
// local`, without options.
func (*LocalStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("storage local has no options, got %q", d.Val())
	}
	return nil
}

// loadStorage loads the handler's storage module, or the local one.
func (h *Handler) loadStorage(ctx caddy.Context) (Storage, error) {
	if h.StorageRaw == nil {
		return LocalStorage{}, nil
	}
	mod, err := ctx.LoadModule(h, "StorageRaw")
	if err != nil {
		return nil, fmt.Errorf("loading storage module: %v", err)
	}
	st, ok := mod.(Storage)
	if !ok {
		return nil, fmt.Errorf("storage module %T is not a bits_upload storage", mod)
	}
	return st, nil
}

// Interface guards
var (
	_ Storage               = LocalStorage{}
	_ caddyfile.Unmarshaler = (*LocalStorage)(nil)
)
