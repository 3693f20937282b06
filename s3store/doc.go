// Package s3store is a [session.Storage] that keeps the bytes of BITS
// upload sessions in an S3-compatible object store, and places finished
// uploads there as objects.
//
// # Where the bytes are
//
// An upload is cut into parts of a fixed size P: the configured part size,
// or more for an upload that would need more than 10,000 parts (see
// [Config.PartSize]). P is fixed once the upload's length is known, so
// part k always covers bytes [(k-1)P, kP), and all parts but the last are
// equal.
//
// Bytes go to the bucket as they arrive. A fragment is written into the
// local file of its part, <TailDir>/<guid>.<part>; when a part other than
// the last is complete, it is uploaded into the session's multipart
// upload (created with the first part) in the background, while the next
// part fills. One part upload at most is in flight per session, and the
// first byte of a part waits until every part before the previous one is
// in the bucket, so the local files never hold more than two parts. A
// fragment that completes no part costs no request to the store. Once a
// part is uploaded, the list of parts in the bucket (number, ETag, size)
// is recorded durably in the session's state (see [session.Journal]), and
// only then is its local file deleted: the bytes a session acknowledged
// are always in a local file or in a recorded part.
//
// Placing an upload sends its last part and completes the multipart
// upload at the destination's key, with If-None-Match: * unless
// overwriting is allowed, so that the store decides atomically that the
// destination is free. An upload of one part or none is one PutObject
// from its local file, with no multipart upload at all. Nothing appears
// at the destination before that. The object carries the session's id in
// its metadata (x-amz-meta-bits-session), by which a restart recognises
// an upload placed before a crash.
//
// # Reading an upload back
//
// A multipart upload cannot be read before it is completed, and it is
// completed at the key it was created for. So the parts of a session that
// may be read back before it is placed, one that computes its digest (the
// session package's sign that a server application is notified), go to a
// multipart upload at the session's staging key under [Config.StatePrefix]
// instead. Reading the complete upload back ([session.DataReader], or
// [Located] for a notification by reference) completes it there; placing
// it afterwards copies the staging object to the destination part by part
// (UploadPartCopy into a new multipart upload, completed with
// If-None-Match, since a plain copy cannot be made conditional on its
// destination) and deletes the staging object. Of an upload that is not
// complete, only the bytes still in local files can be read back.
//
// # Failures
//
// A store that cannot be reached, or answers with a failure that may pass
// (a 5xx, a timeout, throttling), is [session.ErrStorageUnavailable]: a
// part that failed to upload stays in its local file, and is tried again
// by the next fragment or the commit. A multipart upload that the store
// no longer has (expired by a lifecycle rule, say) is
// [session.ErrDataLost]. A bucket that aborts incomplete multipart
// uploads after some days is recommended, for sessions whose deletion the
// store could not complete.
package s3store
