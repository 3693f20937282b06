// Package protocol implements the wire layer of the BITS upload protocol
// (the "BITS 1.5 Upload Protocol", [MC-BUP]) as spoken by Windows
// Background Intelligent Transfer Service clients.
//
// It turns an HTTP request into a [Packet], or into an [*Error] that
// carries the HTTP status, HRESULT and error context the client must see,
// and it writes every response as an Ack with [WriteAck]. The package knows
// nothing about disks or web servers: every parser is a pure function over
// strings, and every parser has a fuzz target.
package protocol
