package caddymodule

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// day is 24 hours, the unit of Caddy's "d" duration suffix.
const day = 24 * time.Hour

// unmarshal parses input with a fresh Handler.
func unmarshal(t *testing.T, input string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return h, err
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string
		want  Handler
	}{
		{
			name:  "bare directive",
			input: `bits_upload`,
			want:  Handler{},
		},
		{
			name:  "empty block",
			input: "bits_upload {\n}",
			want:  Handler{},
		},
		{
			name:  "root",
			input: "bits_upload {\n\troot /srv/uploads\n}",
			want:  Handler{Root: "/srv/uploads"},
		},
		{
			name:  "root with placeholder",
			input: "bits_upload {\n\troot {http.vars.root}/in\n}",
			want:  Handler{Root: "{http.vars.root}/in"},
		},
		{
			name:  "root quoted with space",
			input: "bits_upload {\n\troot \"/srv/my uploads\"\n}",
			want:  Handler{Root: "/srv/my uploads"},
		},
		{
			name:  "session_dir",
			input: "bits_upload {\n\tsession_dir /var/lib/bits\n}",
			want:  Handler{SessionDir: "/var/lib/bits"},
		},
		{
			name:  "session_dir env placeholder",
			input: "bits_upload {\n\tsession_dir {env.BITS_SESSIONS}\n}",
			want:  Handler{SessionDir: "{env.BITS_SESSIONS}"},
		},
		{
			name:  "max_size MiB",
			input: "bits_upload {\n\tmax_size 10MiB\n}",
			want:  Handler{MaxSize: 10485760},
		},
		{
			name:  "max_size GB",
			input: "bits_upload {\n\tmax_size 1GB\n}",
			want:  Handler{MaxSize: 1000000000},
		},
		{
			name:  "max_size fractional GiB",
			input: "bits_upload {\n\tmax_size 1.5GiB\n}",
			want:  Handler{MaxSize: 1610612736},
		},
		{
			name:  "max_size plain bytes",
			input: "bits_upload {\n\tmax_size 1234\n}",
			want:  Handler{MaxSize: 1234},
		},
		{
			name:  "max_size lower-case with space in quotes",
			input: "bits_upload {\n\tmax_size \"2 kb\"\n}",
			want:  Handler{MaxSize: 2000},
		},
		{
			name:  "max_size one byte",
			input: "bits_upload {\n\tmax_size 1\n}",
			want:  Handler{MaxSize: 1},
		},
		{
			name:  "max_size upper bound 4EiB",
			input: "bits_upload {\n\tmax_size 4EiB\n}",
			want:  Handler{MaxSize: 1 << 62},
		},
		{
			name:  "session_timeout seconds",
			input: "bits_upload {\n\tsession_timeout 2s\n}",
			want:  Handler{SessionTimeout: caddy.Duration(2 * time.Second)},
		},
		{
			name:  "session_timeout days",
			input: "bits_upload {\n\tsession_timeout 14d\n}",
			want:  Handler{SessionTimeout: caddy.Duration(14 * day)},
		},
		{
			name:  "session_timeout minutes",
			input: "bits_upload {\n\tsession_timeout 90m\n}",
			want:  Handler{SessionTimeout: caddy.Duration(90 * time.Minute)},
		},
		{
			name:  "session_timeout mixed units",
			input: "bits_upload {\n\tsession_timeout 1d12h\n}",
			want:  Handler{SessionTimeout: caddy.Duration(36 * time.Hour)},
		},
		{
			name:  "allow_overwrite",
			input: "bits_upload {\n\tallow_overwrite\n}",
			want:  Handler{AllowOverwrite: true},
		},
		{
			name:  "host_id name",
			input: "bits_upload {\n\thost_id node1.example.com\n}",
			want:  Handler{HostID: "node1.example.com"},
		},
		{
			name:  "host_id placeholder kept verbatim",
			input: "bits_upload {\n\thost_id {system.hostname}\n}",
			want:  Handler{HostID: "{system.hostname}"},
		},
		{
			name:  "host_id_fallback_timeout days",
			input: "bits_upload {\n\thost_id_fallback_timeout 1d\n}",
			want:  Handler{HostIDFallbackTimeout: caddy.Duration(day)},
		},
		{
			name:  "host_id_fallback_timeout seconds",
			input: "bits_upload {\n\thost_id_fallback_timeout 110s\n}",
			want:  Handler{HostIDFallbackTimeout: caddy.Duration(110 * time.Second)},
		},
		{
			name: "every option",
			input: `bits_upload {
				root /srv/uploads
				session_dir /var/lib/caddy/bits
				max_size 10MiB
				session_timeout 90m
				allow_overwrite
				host_id 10.0.0.7
				host_id_fallback_timeout 110s
			}`,
			want: Handler{
				Root:                  "/srv/uploads",
				SessionDir:            "/var/lib/caddy/bits",
				MaxSize:               10485760,
				SessionTimeout:        caddy.Duration(90 * time.Minute),
				AllowOverwrite:        true,
				HostID:                "10.0.0.7",
				HostIDFallbackTimeout: caddy.Duration(110 * time.Second),
			},
		},
		{
			name: "IPv6 host_id in brackets",
			input: `bits_upload {
				host_id [2001:db8::7]
			}`,
			want: Handler{HostID: "[2001:db8::7]"},
		},
		{
			name: "repeated subdirective: last one wins",
			input: `bits_upload {
				max_size 1GB
				max_size 10MiB
			}`,
			want: Handler{MaxSize: 10485760},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unmarshal(t, tc.input)
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile(%q): unexpected error: %v", tc.input, err)
			}
			// Compare only the configuration (exported) fields; the
			// unexported ones must stay zero after parsing.
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("UnmarshalCaddyfile(%q)\n got: %+v\nwant: %+v", tc.input, *got, tc.want)
			}
		})
	}
}

// TestUnmarshalCaddyfileJSON checks that a parsed handler marshals to the
// JSON field names Caddy's config uses, and that unset options are omitted.
func TestUnmarshalCaddyfileJSON(t *testing.T) {
	h, err := unmarshal(t, `bits_upload {
		root /srv/uploads
		session_dir /var/lib/bits
		max_size 1GB
		session_timeout 2s
		allow_overwrite
		host_id node1
		host_id_fallback_timeout 1d
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"root":"/srv/uploads","session_dir":"/var/lib/bits","max_size":1000000000,` +
		`"session_timeout":2000000000,"allow_overwrite":true,"host_id":"node1",` +
		`"host_id_fallback_timeout":86400000000000}`
	if string(got) != want {
		t.Errorf("JSON\n got: %s\nwant: %s", got, want)
	}

	empty, err := json.Marshal(new(Handler))
	if err != nil {
		t.Fatal(err)
	}
	if string(empty) != `{}` {
		t.Errorf("JSON of zero Handler = %s, want {}", empty)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	const argErr = "wrong argument count or unexpected line ending after "
	for _, tc := range []struct {
		name  string
		input string
		want  string // substring of the error
	}{
		{
			name:  "argument to the directive",
			input: "bits_upload foo {\n}",
			want:  argErr + "'foo', at Testfile:1",
		},
		{
			name:  "argument to the directive without block",
			input: "bits_upload foo",
			want:  argErr + "'foo', at Testfile:1",
		},
		// missing arguments
		{
			name:  "root without argument",
			input: "bits_upload {\n\troot\n}",
			want:  argErr + "'root', at Testfile:2",
		},
		{
			name:  "session_dir without argument",
			input: "bits_upload {\n\tsession_dir\n}",
			want:  argErr + "'session_dir', at Testfile:2",
		},
		{
			name:  "max_size without argument",
			input: "bits_upload {\n\tmax_size\n}",
			want:  argErr + "'max_size', at Testfile:2",
		},
		{
			name:  "session_timeout without argument",
			input: "bits_upload {\n\tsession_timeout\n}",
			want:  argErr + "'session_timeout', at Testfile:2",
		},
		{
			name:  "host_id without argument",
			input: "bits_upload {\n\thost_id\n}",
			want:  argErr + "'host_id', at Testfile:2",
		},
		{
			name:  "host_id_fallback_timeout without argument",
			input: "bits_upload {\n\thost_id_fallback_timeout\n}",
			want:  argErr + "'host_id_fallback_timeout', at Testfile:2",
		},
		// too many arguments
		{
			name:  "root with two arguments",
			input: "bits_upload {\n\troot /a /b\n}",
			want:  argErr + "'/a', at Testfile:2",
		},
		{
			name:  "session_dir with two arguments",
			input: "bits_upload {\n\tsession_dir /a /b\n}",
			want:  argErr + "'/a', at Testfile:2",
		},
		{
			name:  "max_size with two arguments",
			input: "bits_upload {\n\tmax_size 10 MiB\n}",
			want:  argErr + "'10', at Testfile:2",
		},
		{
			name:  "session_timeout with two arguments",
			input: "bits_upload {\n\tsession_timeout 2s 3s\n}",
			want:  argErr + "'2s', at Testfile:2",
		},
		{
			name:  "host_id with two arguments",
			input: "bits_upload {\n\thost_id a b\n}",
			want:  argErr + "'a', at Testfile:2",
		},
		{
			name:  "host_id_fallback_timeout with two arguments",
			input: "bits_upload {\n\thost_id_fallback_timeout 1d 2d\n}",
			want:  argErr + "'1d', at Testfile:2",
		},
		{
			name:  "allow_overwrite with an argument",
			input: "bits_upload {\n\tallow_overwrite yes\n}",
			want:  argErr + "'yes', at Testfile:2",
		},
		{
			name:  "allow_overwrite with false",
			input: "bits_upload {\n\tallow_overwrite false\n}",
			want:  argErr + "'false', at Testfile:2",
		},
		// sizes
		{
			name:  "invalid size",
			input: "bits_upload {\n\tmax_size lots\n}",
			want:  `max_size "lots" is not a size such as 500MB or 10GiB, at Testfile:2`,
		},
		{
			name:  "negative size",
			input: "bits_upload {\n\tmax_size -5\n}",
			want:  `max_size must be positive, got "-5", at Testfile:2`,
		},
		{
			name:  "unknown size unit",
			input: "bits_upload {\n\tmax_size 10QB\n}",
			want:  `max_size "10QB" is not a size such as 500MB or 10GiB, at Testfile:2`,
		},
		{
			name:  "zero size",
			input: "bits_upload {\n\tmax_size 0\n}",
			want:  `max_size must be positive, got "0", at Testfile:2`,
		},
		{
			name:  "zero size with unit",
			input: "bits_upload {\n\tmax_size 0MiB\n}",
			want:  `max_size must be positive, got "0MiB", at Testfile:2`,
		},
		{
			name:  "size that rounds to zero",
			input: "bits_upload {\n\tmax_size 0.1\n}",
			want:  `max_size must be positive, got "0.1", at Testfile:2`,
		},
		{
			name:  "size just above the upper bound",
			input: "bits_upload {\n\tmax_size 4611686018427387905\n}",
			want:  `max_size "4611686018427387905" is too large, at Testfile:2`,
		},
		{
			name:  "size overflowing uint64",
			input: "bits_upload {\n\tmax_size 100EiB\n}",
			want:  `max_size "100EiB" is too large, at Testfile:2`,
		},
		// durations
		{
			name:  "zero session_timeout",
			input: "bits_upload {\n\tsession_timeout 0s\n}",
			want:  `session_timeout must be positive, got "0s", at Testfile:2`,
		},
		{
			name:  "zero session_timeout without unit",
			input: "bits_upload {\n\tsession_timeout 0\n}",
			want:  `session_timeout must be positive, got "0", at Testfile:2`,
		},
		{
			name:  "negative session_timeout",
			input: "bits_upload {\n\tsession_timeout -5s\n}",
			want:  `session_timeout must be positive, got "-5s", at Testfile:2`,
		},
		{
			name:  "negative session_timeout in days",
			input: "bits_upload {\n\tsession_timeout -1d\n}",
			want:  `session_timeout must be positive, got "-1d", at Testfile:2`,
		},
		{
			name:  "invalid session_timeout",
			input: "bits_upload {\n\tsession_timeout soon\n}",
			want:  `parsing session_timeout "soon": time: invalid duration "soon", at Testfile:2`,
		},
		{
			name:  "session_timeout without unit",
			input: "bits_upload {\n\tsession_timeout 30\n}",
			want:  `parsing session_timeout "30": time: missing unit in duration "30", at Testfile:2`,
		},
		{
			name:  "zero host_id_fallback_timeout",
			input: "bits_upload {\n\thost_id_fallback_timeout 0s\n}",
			want:  `host_id_fallback_timeout must be positive, got "0s", at Testfile:2`,
		},
		{
			name:  "negative host_id_fallback_timeout",
			input: "bits_upload {\n\thost_id_fallback_timeout -5s\n}",
			want:  `host_id_fallback_timeout must be positive, got "-5s", at Testfile:2`,
		},
		{
			name:  "invalid host_id_fallback_timeout",
			input: "bits_upload {\n\thost_id_fallback_timeout soon\n}",
			want:  `parsing host_id_fallback_timeout "soon": time: invalid duration "soon", at Testfile:2`,
		},
		// unknown subdirective
		{
			name:  "unknown subdirective",
			input: "bits_upload {\n\tbogus\n}",
			want:  `unrecognized bits_upload subdirective "bogus", at Testfile:2`,
		},
		{
			name:  "unknown subdirective with arguments",
			input: "bits_upload {\n\troot /srv\n\tmax_upload 10MiB\n}",
			want:  `unrecognized bits_upload subdirective "max_upload", at Testfile:3`,
		},
		{
			// A block after a subdirective is reported as an unknown
			// subdirective "{" rather than as an unexpected block.
			name:  "block after a subdirective",
			input: "bits_upload {\n\troot /srv {\n\t\tx\n\t}\n}",
			want:  `unrecognized bits_upload subdirective "{", at Testfile:2`,
		},
		{
			name:  "misspelled option (case sensitive)",
			input: "bits_upload {\n\tRoot /srv\n}",
			want:  `unrecognized bits_upload subdirective "Root", at Testfile:2`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unmarshal(t, tc.input)
			if err == nil {
				t.Fatalf("UnmarshalCaddyfile(%q): expected error containing %q, got nil", tc.input, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("UnmarshalCaddyfile(%q)\n got error: %v\nwant substring: %s", tc.input, err, tc.want)
			}
		})
	}
}

// TestUnmarshalCaddyfileHostIDChecked checks that a host id without
// placeholders is validated when the Caddyfile is adapted, and that one
// with placeholders is left for Provision to expand.
func TestUnmarshalCaddyfileHostIDChecked(t *testing.T) {
	for host, want := range map[string]string{
		"http://node1": `host_id "http://node1" must be a bare host name or IP address, at Testfile:2`,
		"node1:8080":   `host_id "node1:8080" must not include a port; every node serves the same port, at Testfile:2`,
		"node1/x":      `host_id "node1/x" must be a bare host name or IP address, at Testfile:2`,
	} {
		_, err := unmarshal(t, "bits_upload {\n\thost_id "+host+"\n}")
		if err == nil || err.Error() != want {
			t.Errorf("host_id %s: error %v, want %q", host, err, want)
		}
	}
	h, err := unmarshal(t, "bits_upload {\n\thost_id {env.NODE}:80\n}")
	if err != nil || h.HostID != "{env.NODE}:80" {
		t.Fatalf("host_id with a placeholder: %v, %q", err, h.HostID)
	}
	h.hostID = "node1:80" // what Provision would expand it to
	if err := h.Validate(); err == nil {
		t.Error("Validate accepted an expanded host id with a port")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Handler
		want string // "" means valid
	}{
		{name: "zero handler", h: Handler{}},
		{
			name: "every option valid",
			h: Handler{
				Root:                  "/srv",
				SessionDir:            "/var/lib/bits",
				MaxSize:               1 << 30,
				SessionTimeout:        caddy.Duration(14 * day),
				AllowOverwrite:        true,
				HostID:                "node1",
				HostIDFallbackTimeout: caddy.Duration(day),
				hostID:                "node1",
			},
		},
		{
			name: "negative max_size",
			h:    Handler{MaxSize: -1},
			want: "max_size must not be negative, got -1",
		},
		{
			name: "negative session_timeout",
			h:    Handler{SessionTimeout: caddy.Duration(-5 * time.Second)},
			want: "session_timeout must not be negative, got -5s",
		},
		{
			name: "negative host_id_fallback_timeout",
			h:    Handler{HostIDFallbackTimeout: caddy.Duration(-time.Minute)},
			want: "host_id_fallback_timeout must not be negative, got -1m0s",
		},
		{
			name: "host id with scheme",
			h:    Handler{HostID: "http://node1", hostID: "http://node1"},
			want: `host_id "http://node1" must be a bare host name or IP address`,
		},
		{
			name: "host id with port",
			h:    Handler{HostID: "node1:8080", hostID: "node1:8080"},
			want: `host_id "node1:8080" must not include a port`,
		},
		{
			// Validate checks the expanded host id set by Provision, not
			// the raw HostID field.
			name: "only expanded host id is checked",
			h:    Handler{HostID: "{env.NODE}", hostID: "node1"},
		},
		{
			name: "unexpanded invalid HostID not checked before Provision",
			h:    Handler{HostID: "http://node1"},
		},
		{
			name: "expanded host id invalid",
			h:    Handler{HostID: "{env.NODE}", hostID: "node1/x"},
			want: `host_id "node1/x" must be a bare host name or IP address`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			err := h.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: expected error containing %q, got nil", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate\n got error: %v\nwant substring: %s", err, tc.want)
			}
		})
	}
}

func TestValidateHostID(t *testing.T) {
	bare := "must be a bare host name or IP address"
	for _, tc := range []struct {
		host string
		want string // "" means valid
	}{
		// accepted
		{host: "node1"},
		{host: "node1.example.com"},
		{host: "NODE-1.Example.COM"},
		{host: "xn--bcher-kva.example"},
		{host: "10.0.0.7"},
		{host: "192.168.1.255"},
		{host: "[::1]"},
		{host: "[2001:db8::7]"},
		{host: "[fe80::1%25eth0]", want: `host_id "[fe80::1%25eth0]" is not a bracketed IPv6 address`},
		{host: "::1"}, // bare IPv6 (more than one colon) is let through
		{host: "2001:db8::7"},
		{host: strings.Repeat("a", 300)},
		// rejected
		{host: strings.Repeat("a", 301), want: "host_id is longer than 300 characters"},
		{host: "http://node1", want: bare},
		{host: "https://node1.example.com", want: bare},
		{host: "node1://x", want: bare},
		{host: "node1:8080", want: `host_id "node1:8080" must not include a port; every node serves the same port`},
		{host: "10.0.0.7:443", want: "must not include a port"},
		{host: "node1:", want: "must not include a port"},
		{host: "[::1]:443", want: `host_id "[::1]:443" must not include a port; every node serves the same port`},
		{host: "[::1", want: `host_id "[::1" is not a bracketed IPv6 address`},
		{host: "[10.0.0.1]", want: `host_id "[10.0.0.1]" is not a bracketed IPv6 address`},
		{host: "[]", want: `host_id "[]" is not a bracketed IPv6 address`},
		{host: "a:b:c", want: `host_id "a:b:c" must not include a port; every node serves the same port`},
		{host: "node1/upload", want: bare},
		{host: "node1/", want: bare},
		{host: "/node1", want: bare},
		{host: "node1?x=1", want: bare},
		{host: "node1#frag", want: bare},
		{host: "user@node1", want: bare},
		{host: "node 1", want: bare},
		{host: " node1", want: bare},
		{host: "node1\t", want: bare},
	} {
		t.Run(tc.host, func(t *testing.T) {
			err := validateHostID(tc.host)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("validateHostID(%q): unexpected error: %v", tc.host, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validateHostID(%q): expected error containing %q, got nil", tc.host, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validateHostID(%q)\n got error: %v\nwant substring: %s", tc.host, err, tc.want)
			}
		})
	}
}

func TestCheckSeparate(t *testing.T) {
	p := filepath.FromSlash
	for _, tc := range []struct {
		name       string
		root, sess string
		want       string // "" means fine
	}{
		{name: "siblings", root: p("/srv/uploads"), sess: p("/srv/sessions")},
		{name: "unrelated", root: p("/srv/uploads"), sess: p("/var/lib/caddy/bits_upload/sessions")},
		{name: "prefix but not parent: session dir", root: p("/srv/up"), sess: p("/srv/upload")},
		{name: "prefix but not parent: root", root: p("/srv/upload"), sess: p("/srv/up")},
		{name: "dot-dot prefixed sibling name", root: p("/srv/a"), sess: p("/srv/..a")},
		{
			name: "session dir inside root",
			root: p("/srv/uploads"), sess: p("/srv/uploads/.sessions"),
			want: "session_dir " + p("/srv/uploads/.sessions") + " must not be inside root " + p("/srv/uploads"),
		},
		{
			name: "session dir deep inside root",
			root: p("/srv"), sess: p("/srv/a/b/c"),
			want: "must not be inside root",
		},
		{
			name: "session dir with dot-dot name inside root",
			root: p("/srv"), sess: p("/srv/..sessions"),
			want: "must not be inside root",
		},
		{
			name: "same directory",
			root: p("/srv/data"), sess: p("/srv/data"),
			want: "session_dir " + p("/srv/data") + " must not be inside root " + p("/srv/data"),
		},
		{
			name: "root inside session dir",
			root: p("/var/bits/root"), sess: p("/var/bits"),
			want: "root " + p("/var/bits/root") + " must not be inside session_dir " + p("/var/bits"),
		},
		{
			name: "filesystem root as upload root",
			root: p("/"), sess: p("/var/bits"),
			want: "must not be inside root",
		},
		{
			name: "filesystem root as session dir",
			root: p("/srv"), sess: p("/"),
			want: "must not be inside session_dir",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSeparate(tc.root, tc.sess)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkSeparate(%q, %q): unexpected error: %v", tc.root, tc.sess, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkSeparate(%q, %q): expected error containing %q, got nil", tc.root, tc.sess, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkSeparate(%q, %q)\n got error: %v\nwant substring: %s", tc.root, tc.sess, err, tc.want)
			}
		})
	}
}

func TestWithin(t *testing.T) {
	p := filepath.FromSlash
	for _, tc := range []struct {
		dir, path string
		want      bool
	}{
		{p("/srv"), p("/srv"), true},
		{p("/srv"), p("/srv/a"), true},
		{p("/srv"), p("/srv/a/b"), true},
		{p("/srv"), p("/srv/..a"), true},
		{p("/srv"), p("/srv/a.."), true},
		{p("/"), p("/srv"), true},
		{p("/"), p("/"), true},
		{p("/srv/a"), p("/srv"), false},
		{p("/srv/a"), p("/srv/b"), false},
		{p("/srv/up"), p("/srv/upload"), false},
		{p("/srv/upload"), p("/srv/up"), false},
		{p("/srv"), p("/srvx"), false},
		{p("/srv"), p("/"), false},
		{p("/a/b"), p("/c/d"), false},
	} {
		if got := within(tc.dir, tc.path); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.dir, tc.path, got, tc.want)
		}
	}
}
