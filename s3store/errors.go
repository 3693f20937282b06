package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/caddy-bits/caddy-bits/session"
)

// httpStatus returns the HTTP status of the store's answer that err
// reports, or 0 when err is not an answer of the store.
func httpStatus(err error) int {
	if re, ok := errors.AsType[*awshttp.ResponseError](err); ok {
		return re.HTTPStatusCode()
	}
	if re, ok := errors.AsType[*smithyhttp.ResponseError](err); ok {
		return re.HTTPStatusCode()
	}
	return 0
}

// errorCode returns the S3 error code err reports, such as "NoSuchUpload",
// or "".
func errorCode(err error) string {
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		return ae.ErrorCode()
	}
	return ""
}

// isNoSuchUpload reports whether err says the multipart upload does not
// exist (any more).
func isNoSuchUpload(err error) bool {
	if _, ok := errors.AsType[*types.NoSuchUpload](err); ok {
		return true
	}
	return errorCode(err) == "NoSuchUpload"
}

// classify names what a failed request to the store means for a session:
// a store that is down, slow or overloaded, or a request that never got
// an answer, is session.ErrStorageUnavailable (it may pass); a refused
// one is fs.ErrPermission; a multipart upload that is gone is
// session.ErrDataLost. The error is returned wrapped, with the request's
// own error; any other error is returned as it is.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch status := httpStatus(err); {
	case isNoSuchUpload(err):
		kind = session.ErrDataLost
	case status == http.StatusForbidden:
		kind = fs.ErrPermission
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		kind = session.ErrStorageUnavailable
	case status != 0:
		switch errorCode(err) {
		case "SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable":
			kind = session.ErrStorageUnavailable
		}
	default:
		// No answer at all: a connection that failed or broke, or a
		// request that ran out of time.
		_, sendErr := errors.AsType[*smithyhttp.RequestSendError](err)
		_, netErr := errors.AsType[net.Error](err)
		if sendErr || netErr || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF) {
			kind = session.ErrStorageUnavailable
		}
	}
	if kind == nil {
		return err
	}
	return fmt.Errorf("%w: %w", kind, err)
}
