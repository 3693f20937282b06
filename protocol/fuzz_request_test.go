package protocol

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseRequest feeds ParseRequest arbitrary header values and body
// lengths and checks that what it accepts is consistent: a known request
// packet type, a canonical session id where one is needed, a Fragment
// whose range describes exactly its body, and errors that are either 400
// E_INVALIDARG or 500 BG_E_SESSION_NOT_FOUND with context 0x5.
func FuzzParseRequest(f *testing.F) {
	f.Add("Fragment", "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}", "bytes 0-4891/4892", "", int64(4892), false)
	f.Add("Create-Session", "", "", UploadProtocol, int64(0), false)
	f.Add("Ping", "", "", "", int64(0), false)
	f.Add("close-session", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}", "", "", int64(0), false)
	f.Add("Fragment", "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}", "bytes 0--1/0", "", int64(0), false)
	f.Add("Fragment", "x", "bytes 0-1/2", "", int64(2), true)
	f.Add("Ack", "", "", "", int64(1), false)
	f.Fuzz(func(t *testing.T, packetType, sessionID, contentRange, protocols string, length int64, chunked bool) {
		r := httptest.NewRequest(Method, "/f.bin", http.NoBody)
		r.Header = http.Header{}
		for name, v := range map[string]string{
			HeaderPacketType: packetType, HeaderSessionID: sessionID,
			"Content-Range": contentRange, HeaderSupportedProtocols: protocols,
		} {
			if v != "" {
				r.Header[name] = []string{v}
			}
		}
		r.ContentLength = length
		if length >= 0 {
			r.Header["Content-Length"] = []string{strconv.FormatInt(length, 10)}
		}
		if chunked {
			r.TransferEncoding = []string{"chunked"}
		}
		p, perr := ParseRequest(r)
		if perr != nil {
			if p != nil {
				t.Fatalf("ParseRequest returned both %+v and %v", p, perr)
			}
			ok := (perr.Status == http.StatusBadRequest && perr.Code == EInvalidArg) ||
				(perr.Status == http.StatusInternalServerError && perr.Code == BGSessionNotFound)
			if !ok || perr.Context != ContextRemoteFile {
				t.Fatalf("unexpected error %+v", perr)
			}
			return
		}
		if p.Type == PacketUnknown || p.Type == PacketAck {
			t.Fatalf("accepted packet type %v from %q", p.Type, packetType)
		}
		if want, _ := ParsePacketType(packetType); want != p.Type {
			t.Fatalf("packet type %v, header says %q", p.Type, packetType)
		}
		if p.Type.NeedsSession() {
			id, err := ParseSessionID(sessionID)
			if err != nil || id != p.SessionID {
				t.Fatalf("session id %q accepted as %q", sessionID, p.SessionID)
			}
		} else if p.SessionID != "" {
			t.Fatalf("session id on a %v packet", p.Type)
		}
		if chunked {
			t.Fatal("accepted a chunked body")
		}
		if p.Type.HasBody() {
			if p.Range.Len() != length || p.ContentLength != length || p.Range.Last >= p.Range.Total {
				t.Fatalf("fragment range %+v with body %d", p.Range, length)
			}
		} else if length != 0 {
			t.Fatalf("%v packet with a %d-byte body accepted", p.Type, length)
		}
		if p.Type == PacketCreateSession {
			if len(p.Protocols) == 0 || len(p.Protocols) > MaxSupportedProtocols {
				t.Fatalf("protocols %v", p.Protocols)
			}
			for _, proto := range p.Protocols {
				if proto != strings.ToLower(proto) {
					t.Fatalf("protocol %q not canonical", proto)
				}
			}
		}
	})
}
