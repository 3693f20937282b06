package caddymodule

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/s3store"
	"github.com/caddy-bits/caddy-bits/session"
)

// stores holds one session store per absolute session directory, shared
// by every config that names it. Old and new configs overlap during a
// reload, so a store (and its reaper) outlives any one config and
// in-flight uploads keep their sessions.
var stores = caddy.NewUsagePool()

// pooledStore is a store in the pool, with the handlers that use it.
//
// The settings that belong to the whole directory (the session timeouts,
// and the observer its reaper reports to) come from the handler
// registered last that is still alive. A handler registers in Provision
// and unregisters in Cleanup, so a config that fails to load, whose
// handlers are provisioned and then cleaned up, leaves the running
// config's settings as they were.
type pooledStore struct {
	*session.Store
	storageKey string
	// storageConfig is the JSON of the storage module the store was
	// opened with.
	storageConfig string
	// shared is the store's part in a farm that shares sessions, or nil.
	shared *sharedNode
	obs    atomic.Pointer[observer]

	mu    sync.Mutex
	users []*storeUser
}

// storeUser is one handler's claim on a store's settings.
type storeUser struct {
	timeout      time.Duration
	emptyTimeout time.Duration
	obs          *observer
}

// Destruct closes the store when its last config is unloaded.
func (p *pooledStore) Destruct() error { return p.Store.Close() }

// register adds a handler's settings; they apply until it unregisters or
// a later handler registers.
func (p *pooledStore) register(u *storeUser) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users = append(p.users, u)
	p.apply()
}

// unregister removes a handler's settings, restoring the previous ones if
// they were in force.
func (p *pooledStore) unregister(u *storeUser) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, v := range p.users {
		if v == u {
			p.users = append(p.users[:i], p.users[i+1:]...)
			break
		}
	}
	p.apply()
}

// apply puts the last user's settings in force. The caller holds p.mu.
func (p *pooledStore) apply() {
	if len(p.users) == 0 {
		p.obs.Store(nil)
		return
	}
	last := p.users[len(p.users)-1]
	p.SetTimeout(last.timeout)
	p.SetEmptyTimeout(last.emptyTimeout)
	p.obs.Store(last.obs)
}

// acquireStore returns the store for dir, opening it with the storage
// if this is its first user. A store in use with another storage is
// refused: its sessions' bytes are in that one.
func acquireStore(ctx caddy.Context, dir string, timeout time.Duration, storage Storage, storageConfig []byte, sessions *Sessions) (*pooledStore, error) {
	shared := sessions != nil && sessions.Mode == sessionsShared
	storageKey := storage.StorageKey()
	if shared {
		// Shared sessions are sealed with the farm's key, which the
		// directory's own sessions are not.
		storageKey += " (shared sessions)"
	}
	v, loaded, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		p := &pooledStore{storageKey: storageKey, storageConfig: string(storageConfig)}
		st, err := storage.OpenStorage(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("opening storage: %w", err)
		}
		logger := caddy.Log().Named("http.handlers.bits_upload.store")
		opts := session.Options{
			Storage:     st,
			StorageName: storageKey,
			Timeout:     timeout,
			Logger:      logger,
			OnRemove: func(st session.State, reason session.RemoveReason) {
				p.obs.Load().removed(st, reason)
				if p.shared != nil {
					p.shared.removed(st, reason)
				}
			},
		}
		var node *sharedNode
		if shared {
			s3, ok := st.(*s3store.Storage)
			if !ok {
				return nil, fmt.Errorf("sessions shared needs storage s3, not %s", storage.StorageKey())
			}
			key, err := s3.SharedKey(ctx)
			if err != nil {
				return nil, fmt.Errorf("reading the farm's shared key: %w", err)
			}
			opts.Key = key
			if node, err = newSharedNode(dir, s3, key, sessions, logger.Named("shared")); err != nil {
				return nil, err
			}
		}
		store, err := session.Open(dir, opts)
		if err != nil {
			return nil, fmt.Errorf("opening session_dir: %w", err)
		}
		p.Store = store
		if node != nil {
			node.start(ctx, store)
			p.shared = node
		}
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	p := v.(*pooledStore)
	if loaded && p.storageKey != storageKey {
		_, _ = stores.Delete(dir)
		return nil, fmt.Errorf("session_dir %s is in use with storage %s; a session_dir serves one storage, so give storage %s another one",
			dir, p.storageKey, storageKey)
	}
	if loaded && p.storageConfig != string(storageConfig) && p.storageKey != (LocalStorage{}).StorageKey() {
		// The store keeps the storage it was opened with, which may be
		// busy with uploads; other settings of the same storage (such as
		// credentials or the part size) apply when it is opened again.
		ctx.Logger().Warn("storage settings changed, but session_dir's store keeps those it was opened with until Caddy restarts",
			zap.String("session_dir", dir), zap.String("storage", p.storageKey))
	}
	return p, nil
}
