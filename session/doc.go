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
//     or, on some file systems, read back as zeros. Every checkpoint fsyncs
//     the data file before it records the checkpointed length, the SHA-256
//     state and the boot id in state.json. When the store opens a session
//     whose checkpoint carries another boot id than the running kernel's,
//     it truncates the data file to the checkpointed length, which is
//     known to be durable. The upload rewinds but never serves corrupt
//     data. A checkpoint is taken every CheckpointBytes (64 MiB by
//     default) and CheckpointInterval (30 s by default) of new data, and
//     when the upload completes.
//   - Commit fsyncs the data file, links (or copies, fsyncs and renames)
//     it into place and fsyncs the destination directory, so an upload
//     that was acknowledged as complete survives power loss.
//   - Session creation and metadata updates other than checkpoints are not
//     fsynced. After a power loss such a session may be missing or have an
//     unreadable state file; it is then discarded, and the client's next
//     packet gets BG_E_SESSION_NOT_FOUND and starts over.
//
// Where the boot id cannot be read (systems other than Linux), every
// restart is treated as a process crash.
package session
