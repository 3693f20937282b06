package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// NewTransport returns a new HTTP transport that speaks HTTP/1.1 only, as
// the Windows client does: with keep-alive, the proxy named by the
// environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and Go's default
// timeouts. It is the transport a [Client] uses when its HTTPClient is nil;
// use it to build an HTTPClient with other settings that still talks like
// the Client's own.
//
// Its TLS handshake offers exactly "http/1.1" in ALPN, so that a server that
// also speaks HTTP/2 (Caddy does by default) answers in HTTP/1.1. tlsConfig
// may be nil; otherwise it is cloned and its NextProtos is replaced.
func NewTransport(tlsConfig *tls.Config) *http.Transport {
	var cfg *tls.Config
	if tlsConfig != nil {
		cfg = tlsConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.NextProtos = []string{"http/1.1"}
	var protos http.Protocols
	protos.SetHTTP1(true)
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       cfg,
		Protocols:             &protos,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// LoadRootCAs returns the certificate authorities the system trusts plus
// the PEM-encoded certificates in the named files, such as the root
// certificate of Caddy's internal CA
// (<data dir>/caddy/pki/authorities/local/root.crt). Use it as the RootCAs
// of [Client.TLSConfig]:
//
//	pool, err := client.LoadRootCAs("root.crt")
//	...
//	c := &client.Client{TLSConfig: &tls.Config{RootCAs: pool}}
//
// It fails when a file cannot be read or holds no PEM certificate.
func LoadRootCAs(files ...string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("bits client: reading CA certificates: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("bits client: reading CA certificates: %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// configError is a mistake in the Client's settings; it is never retried.
type configError struct{ msg string }

func (e *configError) Error() string { return "bits client: " + e.msg }

// permanentTransportError returns the error to give up with when err, the
// failure of a request to get any response, is one that retrying cannot
// fix: the server's certificate failed verification, the server refused
// the TLS handshake, the server does not speak TLS on an https URL, or the
// Client's settings are inconsistent. It returns nil for any other error,
// which is transient.
func permanentTransportError(p protocol.PacketType, err error) error {
	var (
		cfgErr    *configError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		rootsErr  x509.SystemRootsError
		verifyErr *tls.CertificateVerificationError
		recErr    tls.RecordHeaderError
		opErr     *net.OpError
	)
	var why string
	switch {
	case errors.As(err, &cfgErr):
		return err
	case errors.As(err, &unknownCA):
		why = "the server's certificate is not trusted: it is signed by an unknown authority " +
			"(trust that CA with TLSConfig.RootCAs, see LoadRootCAs, or install it in the system's trust store)"
	case errors.As(err, &hostErr):
		why = "the server's certificate is not valid for the host name of the URL"
	case errors.As(err, &invalid):
		why = "the server's certificate is invalid"
	case errors.As(err, &rootsErr):
		why = "the system's trusted certificate authorities cannot be loaded"
	case errors.As(err, &verifyErr):
		why = "the server's certificate cannot be verified"
	case errors.As(err, &recErr), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http reports a plain-HTTP answer to a TLS handshake with an
		// untyped error, hence the comparison of its text.
		why = "the server does not speak TLS on this port"
	case errors.As(err, &opErr) && opErr.Op == "remote error" && opErr.Err != nil &&
		strings.HasPrefix(opErr.Err.Error(), "tls: ") && opErr.Err.Error() != "tls: internal error":
		// A TLS alert from the server, such as "protocol version not
		// supported" or "handshake failure": the two sides do not agree,
		// and will not on the next attempt either. An internal error may
		// pass (Caddy sends one while it has no certificate for the name).
		why = "the server refused the TLS handshake"
	default:
		return nil
	}
	return &TLSError{Packet: p, Reason: why, Err: err}
}

// TLSError is a failure to establish a TLS connection that retrying cannot
// fix, such as a server certificate signed by an authority the client does
// not trust. The client gives up on it at once. The underlying error (for
// example an [x509.UnknownAuthorityError]) is available to [errors.As].
type TLSError struct {
	// Packet is the type of the request that failed, or
	// protocol.PacketUnknown for a request of the reply download.
	Packet protocol.PacketType
	// Reason says what went wrong and what to do about it.
	Reason string
	// Err is the error of the TLS handshake.
	Err error
}

// Error formats the failure as "bits client: <packet>: <reason>: <err>".
func (e *TLSError) Error() string {
	return fmt.Sprintf("bits client: %s: %s: %v", opName(e.Packet), e.Reason, e.Err)
}

// Unwrap returns the error of the TLS handshake.
func (e *TLSError) Unwrap() error { return e.Err }
