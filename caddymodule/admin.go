package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

func init() {
	caddy.RegisterModule(adminSessions{})
}

// adminSessions is the admin API of live upload sessions, module
// admin.api.bits_upload:
//
//	GET    /bits_upload/sessions       every session of every session_dir in use
//	GET    /bits_upload/sessions/{id}  one session (braced or bare GUID)
//	DELETE /bits_upload/sessions/{id}  cancel it, as Cancel-Session would
type adminSessions struct{}

// CaddyModule returns the Caddy module information.
func (adminSessions) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.bits_upload",
		New: func() caddy.Module { return new(adminSessions) },
	}
}

// Routes returns the admin routes.
func (a adminSessions) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/bits_upload/sessions", Handler: caddy.AdminHandlerFunc(a.handleList)},
		{Pattern: "/bits_upload/sessions/", Handler: caddy.AdminHandlerFunc(a.handleOne)},
	}
}

// sessionInfo is a session as the admin API reports it.
type sessionInfo struct {
	ID           string    `json:"id"`
	Destination  string    `json:"destination"`
	URL          string    `json:"url,omitempty"`
	Received     int64     `json:"received"`
	Total        int64     `json:"total"`
	State        string    `json:"state"`
	Created      time.Time `json:"created"`
	LastActivity time.Time `json:"last_activity"`
	User         string    `json:"user,omitempty"`
	Client       string    `json:"client,omitempty"`
	ReplyURL     string    `json:"reply_url,omitempty"`
	SessionDir   string    `json:"session_dir"`
}

// Session states as the admin API reports them.
const (
	stateCreated   = "created"   // no fragment yet
	stateReceiving = "receiving" // some bytes held
	stateComplete  = "complete"  // every byte held, not finished (commit or notification pending or failed)
	stateFinished  = "finished"  // committed or delivered; waiting for Close-Session
)

func describeSession(st session.State, dir string) sessionInfo {
	state := stateReceiving
	switch {
	case st.Finished:
		state = stateFinished
	case st.Complete():
		state = stateComplete
	case st.Total < 0:
		state = stateCreated
	}
	info := sessionInfo{
		ID:           st.ID.Wire(),
		Destination:  st.DestinationPath(),
		URL:          st.URL,
		Received:     st.Received,
		Total:        st.Total,
		State:        state,
		Created:      st.Created.UTC(),
		LastActivity: st.LastActivity.UTC(),
		User:         st.User,
		Client:       st.Client,
		SessionDir:   dir,
	}
	if st.Final != nil {
		info.ReplyURL = st.Final.ReplyURL
	}
	return info
}

// openStores returns the stores in use, by directory.
func openStores() []*pooledStore {
	var out []*pooledStore
	stores.Range(func(_, v any) bool {
		out = append(out, v.(*pooledStore))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Dir() < out[j].Dir() })
	return out
}

func (adminSessions) handleList(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
	}
	list := []sessionInfo{}
	for _, st := range openStores() {
		for _, s := range st.List() {
			list = append(list, describeSession(s, st.Dir()))
		}
	}
	return writeJSON(w, list)
}

func (adminSessions) handleOne(w http.ResponseWriter, r *http.Request) error {
	raw := strings.TrimPrefix(r.URL.Path, "/bits_upload/sessions/")
	if !strings.HasPrefix(raw, "{") {
		raw = "{" + raw + "}"
	}
	id, err := protocol.ParseSessionID(raw)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid session id: %v", err)}
	}
	for _, store := range openStores() {
		sess, err := store.Get(id)
		if err != nil {
			continue
		}
		switch r.Method {
		case http.MethodGet:
			return writeJSON(w, describeSession(sess.State(), store.Dir()))
		case http.MethodDelete:
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			defer cancel()
			st, err := store.Remove(ctx, id, session.RemovedCancelled)
			if errors.Is(err, session.ErrClosed) || errors.Is(err, session.ErrNotFound) {
				break
			}
			if err != nil {
				return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("cancelling session: %v", err)}
			}
			caddy.Log().Named("admin.api.bits_upload").Info("session cancelled through the admin API",
				zap.String("session_id", st.ID.Wire()),
				zap.String("destination", st.DestinationPath()),
				zap.Int64("received", st.Received),
				zap.Int64("total", st.Total))
			return writeJSON(w, describeSession(st, store.Dir()))
		default:
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
		}
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no session %s", id.Wire())}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return nil
}

// Interface guard
var _ caddy.AdminRouter = (*adminSessions)(nil)
