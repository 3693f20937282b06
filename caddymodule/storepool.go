package caddymodule

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-bits/caddy-bits/session"
)

// stores holds one session store per absolute session directory, shared
// by every config that names it. Old and new configs overlap during a
// reload, so a store (and its reaper) outlives any one config and
// in-flight uploads keep their sessions.
var stores = caddy.NewUsagePool()

// pooledStore is a store in the pool, with the observer that its own
// removals (reaping) are reported to.
type pooledStore struct {
	*session.Store
	obs atomic.Pointer[observer]
}

// Destruct closes the store when its last config is unloaded.
func (p *pooledStore) Destruct() error { return p.Store.Close() }

// acquireStore returns the store for dir, opening it if this is its first
// user, and applies the config's session timeout. The most recently
// provisioned config's timeout applies to the whole directory.
func acquireStore(dir string, timeout time.Duration) (*pooledStore, error) {
	v, _, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		p := new(pooledStore)
		st, err := session.Open(dir, session.Options{
			Timeout: timeout,
			Logger:  caddy.Log().Named("http.handlers.bits_upload.store"),
			OnRemove: func(st session.State, reason session.RemoveReason) {
				p.obs.Load().removed(st, reason)
			},
		})
		if err != nil {
			return nil, fmt.Errorf("opening session_dir: %w", err)
		}
		p.Store = st
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	p := v.(*pooledStore)
	p.SetTimeout(timeout)
	return p, nil
}
