package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddy-bits/caddy-bits/s3store"
	"github.com/caddy-bits/caddy-bits/session"
)

// The headers that name an upload kept in an object store, in a
// notification by reference: the bucket and key of the object, and a URL
// that reads it without credentials while the notification lasts.
const (
	objectBucketHeader = "BITS-Request-DataFile-Bucket"
	objectKeyHeader    = "BITS-Request-DataFile-Key"
	objectURLHeader    = "BITS-Request-DataFile-URL"
)

// nameObject names the upload of d in req, for a notification by
// reference to an application when the storage keeps the upload in a
// bucket rather than a local file. The object is the upload's staging
// object, which is deleted once the session is settled, so the URL lives
// as long as the notification may (notify's timeout). With no file to
// write, the application answers its reply in the response body, as it
// would by value; BITS-Response-DataFile-Name is not sent.
func (h *Handler) nameObject(ctx context.Context, req *http.Request, d *session.Delivery) error {
	data, err := d.Data()
	if err != nil {
		return err
	}
	loc, ok := data.(s3store.Located)
	st, ok2 := h.store.Storage().(*s3store.Storage)
	if !ok || !ok2 {
		return errors.New("the upload's storage names it neither by local file nor by object, so it cannot be notified by reference")
	}
	bucket, key, err := loc.Location(ctx)
	if err != nil {
		return fmt.Errorf("locating the upload for notification: %w", err)
	}
	lifetime := max(time.Duration(h.Notify.Timeout), time.Second)
	u, err := st.PresignGet(ctx, key, lifetime)
	if err != nil {
		return err
	}
	// Assigned to the map, so that the names keep the exact spelling of
	// the other BITS-Request-DataFile headers on the wire.
	req.Header[objectBucketHeader] = []string{bucket}
	req.Header[objectKeyHeader] = []string{key}
	req.Header[objectURLHeader] = []string{u}
	return nil
}
