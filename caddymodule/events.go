package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/caddy-bits/caddy-bits/session"
)

// Event names, emitted through the events app with the handler as origin.
const (
	eventSessionCreated     = "bits_upload.session_created"
	eventSessionCompleted   = "bits_upload.session_completed"
	eventSessionCancelled   = "bits_upload.session_cancelled"
	eventSessionReaped      = "bits_upload.session_reaped"
	eventNotificationFailed = "bits_upload.notification_failed"
)

// observer turns session lifecycle events into metrics and Caddy events.
// Each handler has one; a store reports the removals it makes on its own
// (reaping) to the observer of the handler provisioned last with it.
type observer struct {
	ctx     caddy.Context
	events  *caddyevents.App
	metrics bool
}

// emit emits an event if anything listens; data is built only then.
func (o *observer) emit(name string, data func() map[string]any) {
	if o == nil || o.events == nil || !o.events.ShouldEmit(name) {
		return
	}
	o.events.Emit(o.ctx, name, data())
}

// count runs f, which updates metrics, if metrics are enabled.
func (o *observer) count(f func()) {
	if o != nil && o.metrics {
		f()
	}
}

// removed records a session the store removed.
func (o *observer) removed(st session.State, reason session.RemoveReason) {
	switch reason {
	case session.RemovedClosed:
		o.count(metrics.sessionsClosed.Inc)
	case session.RemovedCancelled:
		o.count(metrics.sessionsCancelled.Inc)
		o.emit(eventSessionCancelled, func() map[string]any {
			return map[string]any{
				"session_id":  st.ID.Wire(),
				"destination": st.DestinationPath(),
				"received":    st.Received,
				"total":       st.Total,
				"committed":   st.Committed,
				"user":        st.User,
			}
		})
	case session.RemovedReaped:
		o.count(metrics.sessionsReaped.Inc)
		o.emit(eventSessionReaped, func() map[string]any {
			return map[string]any{
				"session_id":    st.ID.Wire(),
				"destination":   st.DestinationPath(),
				"received":      st.Received,
				"total":         st.Total,
				"finished":      st.Finished,
				"last_activity": st.LastActivity.UTC().Format(time.RFC3339Nano),
				"user":          st.User,
			}
		})
	}
}
