// Package client implements the client side of the BITS upload protocol
// (the "BITS 1.5 Upload Protocol", [MC-BUP]) the way the Windows
// Background Intelligent Transfer Service speaks it on the wire.
//
// The high-level entry points are [Client.Upload] and [Client.UploadFile].
// An upload sends an optional Ping, a Create-Session, as many Fragment
// packets as needed and a Close-Session, all as BITS_POST requests on one
// kept-alive connection with exactly one request outstanding. Between the
// final Fragment and the Close-Session it downloads the reply of an
// upload-reply session (BITS-Reply-URL) with HEAD and ranged GET requests.
//
// Like the Windows client, an upload:
//
//   - speaks HTTP/1.1 with keep-alive, also over HTTPS (see [NewTransport]);
//   - follows the server's BITS-Received-Content-Range after every 200 or
//     416 fragment Ack, rewinding or skipping ahead as told;
//   - sizes its fragments adaptively between 5 KB and 13 MB, growing them
//     when Acks come back fast and shrinking them when Acks are slow or
//     the server answers 413, unless [Client.FragmentSize] fixes the size;
//   - retries transient failures (transport errors, 5xx, 408, 409) with
//     jittered exponential backoff, pinging the server before it resumes
//     after a transport error, and gives up after [Client.MaxRetries]
//     consecutive failures, or [Client.NoProgressTimeout], without
//     progress;
//   - gives up at once on failures that retrying cannot fix: 401, 403, 404
//     and other fatal answers, and certificate and TLS handshake errors
//     ([TLSError]);
//   - starts over with a new Create-Session when the server answers
//     BG_E_SESSION_NOT_FOUND to a Fragment;
//   - classifies errors of the server application (BITS-Error-Context 0x7)
//     as MSDN's "Handling Server Application Errors" describes, re-sending
//     the final fragment after a transient failure;
//   - moves to the node named by BITS-Host-Id and falls back to the
//     original URL when that node keeps failing for longer than
//     BITS-Host-Id-Fallback-Timeout.
//
// Server errors are returned as [*Error], which carries the Ack's HTTP
// status, the HRESULT of BITS-Error-Code and the BITS-Error-Context; use
// [errors.As] to inspect them, or [errors.Is] with a sentinel such as
// [ErrSessionNotFound] to match their code.
//
// For HTTPS with a private certificate authority, such as the one of
// Caddy's "tls internal", trust its root certificate through
// [Client.TLSConfig]:
//
//	pool, err := client.LoadRootCAs("/var/lib/caddy/pki/authorities/local/root.crt")
//	if err != nil {
//		return err
//	}
//	c := &client.Client{TLSConfig: &tls.Config{RootCAs: pool}, Username: "alice", Password: pw}
//
// For tests that need exact packet sequences the package also offers one
// packet at a time, without retries: [Client.CreateSession],
// [Session.Fragment], [Session.Close], [Session.Cancel], [Client.Ping] and
// the fully raw [Client.Send].
//
// Basic use:
//
//	c := &client.Client{}
//	res, err := c.UploadFile(ctx, "https://example.com/uploads/report.bin", "report.bin", nil)
//	if err != nil {
//		var be *client.Error
//		if errors.As(err, &be) {
//			log.Printf("server refused the upload: %v (code %v)", be, be.Code)
//		}
//		return err
//	}
//	log.Printf("uploaded %d bytes in session %s", res.Size, res.SessionID)
//
// A Client holds no per-upload state: progress callbacks, reply sinks and
// the like are [UploadOptions], so one Client serves concurrent uploads.
package client
