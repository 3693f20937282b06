// Package session is the durable store of BITS upload sessions. It knows
// nothing about HTTP: the caller hands it parsed ranges and request
// bodies, and it decides what "received" means.
//
// # Shape
//
// A [Store] owns one directory and the sessions in it. A [Session] is what
// anybody may look at (its id and a copy of its [State]); a [Lease],
// returned by [Store.Acquire], holds a session's request lock and carries
// every method that changes it: [Lease.Write] applies a fragment,
// [Lease.Settle] finishes a complete upload (notify, record, place,
// finish, discard, each recorded before the next), and [Lease.Remove]
// deletes it. A newer request for a session takes it over from an older
// one that is still reading a body (see [Store.Acquire]).
//
// Where the bytes of a session live is behind [Storage] and [Data]: the
// local file system ([LocalStorage]) by default, or an object store. What
// a storage may lack is named by optional interfaces ([DataFile],
// [DataReader], [StreamPlacer]).
//
// # Layout
//
// A store's directory holds:
//
//	<dir>/lock                 advisory lock: one process per directory
//	<dir>/key                  the key that seals every state (0600)
//	<dir>/journal.log          append-only: tombstones, and states without a file
//	<dir>/active/<guid>.json   a session's state, once it holds bytes
//	<dir>/active/<guid>.data   the upload, written only at its end (LocalStorage)
//	<dir>/active/<guid>.reply  the server application's reply, if any
//
// File names are the canonical lower-case GUIDs the server generated. A
// session id that came from a client is only ever looked up in memory
// after [protocol.ParseSessionID] accepted it; it is never joined into a
// path. The layout of earlier versions (a directory per session) is
// migrated when the store opens.
//
// Every state is sealed with an HMAC-SHA256 under the store's key, and a
// state the store did not write is refused when it opens: an upload that
// lands in the session directory through a misconfiguration cannot become
// a session. A state must also name a destination that Create would
// accept.
//
// # Where a session's state is
//
// A new session costs nothing on disk. Its id carries, under the store's
// key, its destination, its user and the hour it was made (see mintID), so
// that a session lost before it held any byte (in a process crash, or
// reaped as empty) is made again from its client's next packet
// ([Store.Revive]): no client starts over because of it. Once a fragment
// leaves the session holding bytes it has not finished, its state gets a
// file of its own, <guid>.json, replaced atomically on every change. A
// single-fragment upload never gets a state file: before it is placed,
// its state is one S line of the journal (an R line when the storage only
// adds a record to it), and Close-Session writes its tombstone (an X line).
// The journal is rewritten compactly when the store opens and when most of
// its lines are dead.
//
// # Durability and fsync policy
//
// The data only ever grows at its end, by the bytes of a fragment that
// follow the last byte held. So the number of bytes held is always the
// data's size, and whatever a crash leaves there is the client's own
// bytes, in order.
//
//   - Process crash (kill -9): the page cache survives, so on restart the
//     data's size is trusted. The server never reports fewer bytes than
//     it acknowledged before the crash, and every session it created is
//     found again: one with bytes from its state file or S line, both
//     written before the Ack, one without from its id.
//   - Power loss or kernel crash: bytes that were never fsynced may be lost
//     or, on some file systems, read back as zeros. A checkpoint syncs the
//     data and then records the checkpointed length, the SHA-256 state
//     and the kernel's boot id in the state file, durably. When the store
//     opens a session whose state carries another boot id than the running
//     kernel's, it truncates the data to the checkpointed length, which is
//     known to be durable: the upload rewinds but never serves corrupt
//     data. A checkpoint is taken after every CheckpointBytes (64 MiB by
//     default) and CheckpointInterval (30 s by default) of new data, in
//     the background: the fragments that follow are acknowledged while it
//     syncs, and it records only the length that was held when it began.
//   - A state file, once written durably, is never replaced by one that
//     was not fsynced first: a power loss cannot turn it into an empty
//     file or roll it back past a durable state.
//   - Placing an upload writes its bytes to the disk before its name
//     appears at the destination, and makes the name durable before the
//     final Ack: an upload acknowledged as complete survives a power loss,
//     and a name that survives one names all of its bytes. On XFS, Btrfs
//     and ext4 with a journal, whose fsync of a file also commits the
//     names just linked to it, that costs one fsync of the file after the
//     link (the data was written back, without a commit, before it);
//     elsewhere (ext4 without a journal among them) the file is fsynced
//     before the link and the directory after it. Every directory
//     a placement creates is fsynced into its parent, from the top down.
//     A placed upload is recognised after a crash (its data file has
//     another link, or the staged file's identity is recorded), so
//     placing again never truncates or rewrites it.
//   - An upload that arrives in one fragment, to be placed without a
//     notification, is written into an unnamed file next to its
//     destination ([StreamPlacer]) and linked from there; its state is
//     recorded in the journal before the link.
//   - Recording a notification's outcome checkpoints the whole upload
//     durably first, so the outcome is never lost or re-delivered after a
//     power loss. Cancel fsyncs the removal of the session's files.
//   - Everything else (the total length, completion, Finish, Close) is an
//     ordinary state update without fsync, or none at all: completion and
//     Finish stay in memory until the next update or a clean shutdown,
//     because recovery can tell a placed upload, and a notification's
//     outcome is recorded durably. After a power loss such a session may
//     be missing, or look a step less far along; redoing a step is
//     idempotent.
//   - Close-Session and Cancel-Session record the id in the journal
//     first, so a crash halfway through still answers a repeated request
//     with 200, and the next Open finishes the deletion.
//
// Where the boot id cannot be read (systems other than Linux), every
// restart is treated as a process crash.
package session
