package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-bits/caddy-bits/session"
)

// stores holds one session store per absolute session directory, shared
// by every config that names it. Old and new configs overlap during a
// reload, so a store (and its reaper) outlives any one config and
// in-flight uploads keep their sessions.
var stores = caddy.NewUsagePool()

// pooledStore adapts a store to the pool's destructor interface.
type pooledStore struct{ *session.Store }

// Destruct closes the store when its last config is unloaded.
func (p pooledStore) Destruct() error { return p.Store.Close() }

// acquireStore returns the store for dir, opening it if this is its first
// user, and applies the config's session timeout. The most recently
// provisioned config's timeout applies to the whole directory.
func acquireStore(dir string, timeout time.Duration) (*session.Store, error) {
	v, _, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		st, err := session.Open(dir, session.Options{
			Timeout:  timeout,
			Logger:   caddy.Log().Named("http.handlers.bits_upload.store"),
			OnRemove: onStoreRemove,
		})
		if err != nil {
			return nil, fmt.Errorf("opening session_dir: %w", err)
		}
		return pooledStore{st}, nil
	})
	if err != nil {
		return nil, err
	}
	st := v.(pooledStore).Store
	st.SetTimeout(timeout)
	return st, nil
}

// onStoreRemove is called by every store after it removed a session.
func onStoreRemove(session.State, session.RemoveReason) {}
