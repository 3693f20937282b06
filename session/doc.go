// Package session is the durable store of BITS upload sessions on local
// disk. It knows nothing about HTTP: the caller hands it parsed ranges and
// request bodies, and it decides what "received" means.
//
// # Layout
//
// A [Store] owns one directory:
//
//	<dir>/lock                      advisory lock: one process per directory
//	<dir>/closed.log                recently closed or cancelled session ids
//	<dir>/active/<guid>/state.json  session metadata, replaced atomically
//	<dir>/active/<guid>/data        the upload, written only at its end
//	<dir>/active/<guid>/reply       the server application's reply, if any
//	<dir>/trash/<guid>/             a closed session, being deleted
//
// Directory names are the canonical lower-case GUIDs the server generated.
// A session id that came from a client is only ever looked up in memory
// after [protocol.ParseSessionID] accepted it; it is never joined into a
// path.
//
// # Durability and fsync policy
//
// The data file only ever grows at its end, by the bytes of a fragment that
// follow the last byte held. So the number of bytes held is always the
// data file's size, and whatever a crash leaves there is the client's own
// bytes, in order.
//
//   - Process crash (kill -9): the page cache survives, so on restart the
//     data file's size is trusted. The server never reports fewer bytes
//     than it acknowledged before the crash.
//   - Power loss or kernel crash: bytes that were never fsynced may be lost
//     or, on some file systems, read back as zeros. A checkpoint fsyncs the
//     data file and then records the checkpointed length, the SHA-256 state
//     and the kernel's boot id in state.json, durably. When the store opens
//     a session whose state carries another boot id than the running
//     kernel's, it truncates the data file to the checkpointed length,
//     which is known to be durable: the upload rewinds but never serves
//     corrupt data. A checkpoint is taken after every CheckpointBytes
//     (64 MiB by default) and CheckpointInterval (30 s by default) of new
//     data, so a large upload rewinds by at most that much.
//   - Commit fsyncs the data file, links it into place (or copies, fsyncs
//     and renames it, across file systems) and fsyncs the destination
//     directory before the final Ack, so an upload acknowledged as complete
//     survives power loss. A data file with a second hard link is such a
//     committed file: recovery never truncates it.
//   - Recording a notification's outcome checkpoints the whole upload
//     durably first, so the outcome is never lost or re-delivered after a
//     power loss. Cancel fsyncs the removal of the session's files.
//   - Everything else (session creation, the total length, completion,
//     Finish, Close) is an ordinary state update without fsync, or none at
//     all: completion and Finish stay in memory until the next update or a
//     clean shutdown, because recovery can tell a committed upload by its
//     hard link and a notification's outcome is recorded durably. A small
//     upload thus costs two fsyncs, both in its commit. After a power loss
//     such a session may be missing, have an unreadable state file, or look
//     a step less far along; an unreadable one is discarded (its client
//     gets BG_E_SESSION_NOT_FOUND and starts over), and redoing a step is
//     idempotent.
//   - Close-Session moves the session's directory to the trash with one
//     rename and deletes it in the background; Cancel-Session deletes it
//     before answering. Either records the id in closed.log first, so a
//     crash halfway through still answers a repeated request with 200, and
//     the next Open finishes the deletion.
//
// Where the boot id cannot be read (systems other than Linux), every
// restart is treated as a process crash.
package session
