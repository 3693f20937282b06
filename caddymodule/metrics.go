package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric labels: low cardinality only, never a session id, path or
// address.
const (
	// Results of a BITS request (label "result" of packets_total).
	resultOK       = "ok"        // 2xx
	resultResync   = "resync"    // 416: the client resends from the server's offset
	resultRejected = "rejected"  // other 4xx: the client broke a rule or was refused
	resultNotFound = "not_found" // BG_E_SESSION_NOT_FOUND: the client starts over
	resultError    = "error"     // other 5xx

	// Results of a notification (label "result" of notifications_total).
	notifySuccess     = "success"      // the application answered 200
	notifyAppError    = "app_error"    // it answered another status
	notifyTimeout     = "timeout"      // it did not answer in time
	notifyUnreachable = "unreachable"  // it could not be reached
	notifyTooLarge    = "too_large"    // its reply exceeded max_reply_size
	notifyLocalError  = "server_error" // storing its reply failed here

	// Results of forwarding a packet to the node that owns its session
	// (label "result" of forwards_total).
	forwardOK          = "ok"          // the owner answered, whatever it answered
	forwardUnreachable = "unreachable" // it could not be reached
)

// metrics are the handler's Prometheus collectors. They are package-level,
// so their values survive config reloads; each config's registry gets them
// registered again.
var metrics struct {
	once sync.Once

	packets              *prometheus.CounterVec
	bytesReceived        prometheus.Counter
	sessionsActive       prometheus.GaugeFunc
	sessionsCreated      prometheus.Counter
	sessionsCompleted    prometheus.Counter
	sessionsCancelled    prometheus.Counter
	sessionsClosed       prometheus.Counter
	sessionsReaped       prometheus.Counter
	notifications        *prometheus.CounterVec
	notificationDuration prometheus.Histogram
	commitDuration       prometheus.Histogram
	forwards             *prometheus.CounterVec
	takeovers            prometheus.Counter
}

// initMetrics creates the collectors once.
func initMetrics() {
	metrics.once.Do(func() {
		const ns, sub = "caddy", "bits_upload"
		metrics.packets = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "packets_total",
			Help: "BITS requests answered, by packet type and result (ok, resync, rejected, not_found, error).",
		}, []string{"packet_type", "result"})
		metrics.bytesReceived = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "bytes_received_total",
			Help: "Upload bytes stored; retransmitted bytes already held are not counted.",
		})
		metrics.sessionsActive = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "sessions_active",
			Help: "Sessions held in all session directories, finished or not.",
		}, activeSessions)
		metrics.sessionsCreated = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sessions_created_total",
			Help: "Sessions created.",
		})
		metrics.sessionsCompleted = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sessions_completed_total",
			Help: "Sessions finished: committed, or delivered to the server application.",
		})
		metrics.sessionsCancelled = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sessions_cancelled_total",
			Help: "Sessions cancelled by their client or through the admin API.",
		})
		metrics.sessionsClosed = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sessions_closed_total",
			Help: "Sessions closed by their client.",
		})
		metrics.sessionsReaped = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sessions_reaped_total",
			Help: "Sessions deleted after session_timeout without activity.",
		})
		metrics.notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "notifications_total",
			Help: "Notifications of the server application, by result (success, app_error, timeout, unreachable, too_large, server_error).",
		}, []string{"result"})
		metrics.notificationDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "notification_duration_seconds",
			Help:    "Time from sending a notification to storing the application's reply.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 240},
		})
		metrics.commitDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "commit_duration_seconds",
			Help:    "Time to place a complete upload at its destination, fsyncs included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		})
		metrics.forwards = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "forwards_total",
			Help: "Requests of shared sessions forwarded to the node that owns them, by result (ok, unreachable).",
		}, []string{"result"})
		metrics.takeovers = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "takeovers_total",
			Help: "Shared sessions this node took over from a node that could not be reached.",
		})
	})
}

// countForward counts a forwarded request. Shared sessions belong to the
// session directory, not to one config, so they are counted whatever the
// handler's disable_metrics says.
func countForward(result string) {
	initMetrics()
	metrics.forwards.WithLabelValues(result).Inc()
}

// countTakeover counts a session taken over.
func countTakeover() {
	initMetrics()
	metrics.takeovers.Inc()
}

// registerMetrics adds the collectors to a config's registry. Several
// handlers register the same collectors; that is not an error.
func registerMetrics(reg *prometheus.Registry) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		metrics.packets, metrics.bytesReceived, metrics.sessionsActive,
		metrics.sessionsCreated, metrics.sessionsCompleted, metrics.sessionsCancelled,
		metrics.sessionsClosed, metrics.sessionsReaped, metrics.notifications,
		metrics.notificationDuration, metrics.commitDuration,
		metrics.forwards, metrics.takeovers,
	} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}

// activeSessions counts the sessions of every open store.
func activeSessions() float64 {
	n := 0
	stores.Range(func(_, v any) bool {
		n += v.(*pooledStore).Len()
		return true
	})
	return float64(n)
}

// packetResult names the result of an Ack for packets_total.
func packetResult(status int, code uint32) string {
	switch {
	case status >= 200 && status < 300:
		return resultOK
	case status == 416:
		return resultResync
	case code == 0x8020001F:
		return resultNotFound
	case status >= 500:
		return resultError
	default:
		return resultRejected
	}
}
