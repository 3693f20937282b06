// Command bitsup uploads files to a BITS upload server the way Windows
// BITS clients do, so that a deployment can be checked from any machine.
//
// Usage:
//
//	bitsup upload [flags] FILE URL
//	bitsup ping [flags] URL
//	bitsup cancel [flags] URL SESSION-ID
//	bitsup help [COMMAND]
//
// Flags may come before, between or after the arguments; "--" ends them.
// "bitsup COMMAND --help" lists the flags of a command with their
// defaults. The flags are:
//
//	--user NAME           user name for HTTP Basic authentication
//	--password-env VAR    environment variable that holds the password
//	--ca-cert FILE        also trust the CA certificates in FILE (PEM)
//	--fragment-size SIZE  fixed fragment size (upload; default adaptive)
//	--reply-out FILE      where to save the reply (upload)
//	--retry-for DURATION  how long to keep retrying without progress
//	                      (upload, cancel; default 10m)
//
// upload shows a progress bar on a terminal and plain progress lines
// otherwise. The password is read from the environment variable named by
// --password-env, never from the command line. On failure bitsup exits
// with status 1, names the BITS error (its HRESULT, such as
// BG_E_SESSION_NOT_FOUND, and its context) and, for failures that
// retrying cannot fix (an untrusted certificate, wrong credentials, a
// wrong URL), says what to do. Mistakes in the command line exit with
// status 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// defaultRetryFor is the default of --retry-for: long enough to ride out a
// server restart, a network change or a load balancer's failover, and two
// whole request timeouts of a server that hangs, yet short enough that a
// script learns within minutes that the server is gone.
const defaultRetryFor = 10 * time.Minute

const mainUsage = `usage: bitsup COMMAND [flags] ARGUMENTS

Uploads files to a BITS upload server as Windows BITS clients do.

commands:
  upload FILE URL          upload FILE to URL
  ping URL                 check that URL answers BITS pings
  cancel URL SESSION-ID    discard a session on the server
  help [COMMAND]           show this text, or the flags of COMMAND

Run "bitsup COMMAND --help" for the flags of a command and their defaults.
`

// command is one bitsup command.
type command struct {
	name, args, summary string
	minArgs, maxArgs    int
	// flags selects the command's flags beyond the common ones.
	fragmentSize, replyOut, retryFor bool
}

var commands = []*command{
	{name: "upload", args: "FILE URL", minArgs: 2, maxArgs: 2, fragmentSize: true, replyOut: true, retryFor: true,
		summary: "Uploads FILE to URL as a Windows BITS upload job does, resuming and retrying\n" +
			"like it, and downloads the reply of an upload-reply session."},
	{name: "ping", args: "URL", minArgs: 1, maxArgs: 1,
		summary: "Sends one BITS Ping to URL, without retrying, and reports whether the server\nanswers it."},
	{name: "cancel", args: "URL SESSION-ID", minArgs: 2, maxArgs: 2, retryFor: true,
		summary: "Sends Cancel-Session for SESSION-ID (a braced GUID) to URL, which discards the\n" +
			"session and its data on the server."},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if ue, ok := errors.AsType[usageError](err); ok {
			fmt.Fprintf(os.Stderr, "bitsup: %v\n\n%s", err, ue.usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "bitsup: %v\n", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line; usage is the text that
// explains the command line.
type usageError struct{ msg, usage string }

func (e usageError) Error() string { return e.msg }

// options are the values of the flags.
type options struct {
	user         string
	passwordEnv  string
	caCert       string
	fragmentSize sizeFlag
	replyOut     string
	retryFor     time.Duration
}

// sizeFlag is a size in bytes, such as 64KiB or 4MB; 0 means adaptive.
type sizeFlag int64

func (s *sizeFlag) String() string {
	if *s == 0 {
		return "adaptive"
	}
	return humanize.IBytes(uint64(*s))
}

func (s *sizeFlag) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	switch {
	case err != nil:
		return errors.New("not a size such as 64KiB or 4MB")
	case n == 0:
		return errors.New("must be at least 1 byte")
	case n > client.MaxFragmentSize:
		return fmt.Errorf("must be at most %s, the largest fragment", humanize.IBytes(client.MaxFragmentSize))
	}
	*s = sizeFlag(n)
	return nil
}

// flagSet returns the flags of cmd, bound to o.
func (cmd *command) flagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.user, "user", "", "user `NAME` for HTTP Basic authentication (default: none, no authentication)")
	fs.StringVar(&o.passwordEnv, "password-env", "", "environment `VARIABLE` that holds the password for --user (default: none,\n"+
		"an empty password)")
	fs.StringVar(&o.caCert, "ca-cert", "", "also trust the CA certificates in `FILE` (PEM), such as the root.crt of Caddy's\n"+
		"internal CA, <data dir>/caddy/pki/authorities/local/root.crt (default: none, only the\n"+
		"CAs the system trusts)")
	if cmd.fragmentSize {
		fs.Var(&o.fragmentSize, "fragment-size", "fixed fragment `SIZE`, such as 4MiB (at most 13MiB); adaptive sizes start at 1 MiB\n"+
			"and adapt to the link between 5 KB and 13 MB")
	}
	if cmd.replyOut {
		fs.StringVar(&o.replyOut, "reply-out", "", "save the reply of an upload-reply session to `FILE` (default: none, the reply\n"+
			"is downloaded and discarded)")
	}
	if cmd.retryFor {
		fs.DurationVar(&o.retryFor, "retry-for", defaultRetryFor, "keep retrying transient failures for this `DURATION` without progress;\n"+
			"0 gives up at the first failure")
	}
	return fs
}

// usage returns the help text of cmd.
func (cmd *command) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: bitsup %s [flags] %s\n\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.summary)
	cmd.flagSet(&options{}).VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s %s\n", f.Name, name)
		for line := range strings.SplitSeq(text, "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
		if f.DefValue != "" {
			fmt.Fprintf(&b, "        (default %s)\n", f.DefValue)
		}
	})
	b.WriteString("  -h, --help\n        show this text\n")
	return b.String()
}

// parse parses the command line of cmd, with flags in any position, and
// returns the arguments.
func (cmd *command) parse(args []string, o *options) ([]string, error) {
	fs := cmd.flagSet(o)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		if err != nil {
			return nil, usageError{strings.Replace(err.Error(), " -", " --", 1), cmd.usage()}
		}
		rest := fs.Args()
		if done := len(args) - len(rest); done > 0 && args[done-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs {
		return nil, usageError{fmt.Sprintf("%s needs %s", cmd.name, cmd.args), cmd.usage()}
	}
	return pos, nil
}

// configure adjusts every client bitsup makes; tests use it.
var configure = func(*client.Client) {}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command", mainUsage}
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			for _, cmd := range commands {
				if cmd.name == args[1] {
					fmt.Fprint(stdout, cmd.usage())
					return nil
				}
			}
			return usageError{fmt.Sprintf("unknown command %q", args[1]), mainUsage}
		}
		fmt.Fprint(stdout, mainUsage)
		return nil
	}
	var cmd *command
	for _, c := range commands {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		return usageError{fmt.Sprintf("unknown command %q", name), mainUsage}
	}
	var o options
	pos, err := cmd.parse(args[1:], &o)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, cmd.usage())
		return nil
	}
	if err != nil {
		return err
	}
	c, err := newClient(o)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	switch cmd.name {
	case "upload":
		return explain(upload(ctx, c, pos[0], pos[1], o, stdout), o)
	case "ping":
		if err := c.Ping(ctx, pos[0]); err != nil {
			return explain(err, o)
		}
		fmt.Fprintf(stdout, "%s answers BITS pings\n", pos[0])
		return nil
	default: // cancel
		id, err := protocol.ParseSessionID(pos[1])
		if err != nil {
			return usageError{fmt.Sprintf("session id %q: %v", pos[1], err), cmd.usage()}
		}
		if err := c.Cancel(ctx, pos[0], id); err != nil {
			return explain(err, o)
		}
		fmt.Fprintf(stdout, "session %s cancelled\n", id.Wire())
		return nil
	}
}

// newClient returns the client the options describe.
func newClient(o options) (*client.Client, error) {
	c := &client.Client{FragmentSize: int64(o.fragmentSize), Username: o.user}
	if o.passwordEnv != "" {
		pw, ok := os.LookupEnv(o.passwordEnv)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set", o.passwordEnv)
		}
		c.Password = pw
	}
	if o.caCert != "" {
		pool, err := client.LoadRootCAs(o.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		c.TLSConfig = &tls.Config{RootCAs: pool}
	}
	if o.retryFor > 0 {
		c.NoProgressTimeout = o.retryFor
	} else {
		c.MaxRetries = -1
	}
	configure(c)
	return c, nil
}

// explain prefixes a failure that retrying cannot fix with what to do
// about it.
func explain(err error, o options) error {
	if err == nil {
		return nil
	}
	if te, ok := errors.AsType[*client.TLSError](err); ok {
		var (
			unknownCA x509.UnknownAuthorityError
			hostErr   x509.HostnameError
		)
		var hint string
		switch {
		case errors.As(err, &unknownCA) && o.caCert == "":
			hint = "the server's certificate is not trusted: pass --ca-cert FILE with the certificate of the CA that signed it " +
				"(for Caddy's tls internal: <data dir>/caddy/pki/authorities/local/root.crt), or install that CA in the system's trust store"
		case errors.As(err, &unknownCA):
			hint = "the server's certificate is not trusted: it is signed neither by the CA in " + o.caCert + " nor by one the system trusts"
		case errors.As(err, &hostErr) && hostErr.Certificate != nil:
			names := append([]string{}, hostErr.Certificate.DNSNames...)
			for _, ip := range hostErr.Certificate.IPAddresses {
				names = append(names, ip.String())
			}
			hint = fmt.Sprintf("the server's certificate is not valid for %s: use a host name it names in the URL (%s)", hostErr.Host, strings.Join(names, ", "))
		default:
			hint = te.Reason
		}
		cause := te.Err
		if ue, ok := errors.AsType[*url.Error](cause); ok {
			cause = ue.Err // the URL is on the command line already
		}
		return fmt.Errorf("%s (%s: %w)", hint, opName(te.Packet), cause)
	}
	be, ok := errors.AsType[*client.Error](err)
	if !ok || be.Packet == protocol.PacketUnknown || be.Context == protocol.ContextRemoteApplication {
		// Not an answer of the BITS server itself to a BITS packet: the
		// reply has its own URL, and the server application its own rules.
		return err
	}
	var hint string
	switch {
	case errors.Is(err, client.ErrUnauthorized) && o.user == "":
		hint = "the server wants credentials (401): pass --user NAME and --password-env VARIABLE"
	case errors.Is(err, client.ErrUnauthorized) && o.passwordEnv == "":
		hint = fmt.Sprintf("the server rejected user %q without a password (401): pass the password with --password-env VARIABLE", o.user)
	case errors.Is(err, client.ErrUnauthorized):
		hint = fmt.Sprintf("the server rejected the credentials (401): check the user name %q and the password in $%s", o.user, o.passwordEnv)
	case be.Status == http.StatusForbidden && be.Packet == protocol.PacketCreateSession:
		hint = "the server refused the upload (403): the destination may exist already (bits_upload replaces files " +
			"only with allow_overwrite), or the user may not write there"
	case be.Status == http.StatusForbidden:
		hint = "the server refused access (403): the session may belong to another user, or the user may not write there"
	case errors.Is(err, client.ErrNotFound):
		hint = "nothing at this URL answers BITS (404): check the URL's path and that the server routes it to bits_upload"
	default:
		return err
	}
	return fmt.Errorf("%s: %w", hint, err)
}

// opName names a packet type in messages.
func opName(p protocol.PacketType) string {
	if p == protocol.PacketUnknown {
		return "reply"
	}
	return strings.ToLower(p.String())
}

// upload uploads one file, showing progress, and saves the reply.
func upload(ctx context.Context, c *client.Client, path, target string, o options, stdout io.Writer) error {
	var opts client.UploadOptions
	if o.replyOut != "" {
		f, err := os.Create(o.replyOut)
		if err != nil {
			return err
		}
		defer f.Close()
		opts.Reply = f
	}
	p := newProgress(stdout)
	opts.Progress = p.update
	start := time.Now()
	res, err := c.UploadFile(ctx, target, path, &opts)
	p.done()
	if err != nil {
		if res != nil && res.SessionID != "" && !res.Complete {
			return fmt.Errorf("%w (session %s; `bitsup cancel %s %s` discards it)", err, res.SessionID.Wire(), res.SessionURL, res.SessionID.Wire())
		}
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "uploaded %s (%s) to %s in %s, %s/s, session %s\n",
		path, humanize.IBytes(uint64(res.Size)), target, elapsed.Round(time.Millisecond),
		humanize.Bytes(uint64(float64(res.Size)/max(elapsed.Seconds(), 1e-9))), res.SessionID.Wire())
	if res.Restarts > 0 {
		fmt.Fprintf(stdout, "the server lost the session %d time(s); the upload started over\n", res.Restarts)
	}
	if len(res.Sessions) > 1 || res.HostID != "" {
		for i, s := range res.Sessions {
			fmt.Fprintf(stdout, "session %d: %s at %s", i+1, s.WireSessionID, s.URL)
			if s.HostID != "" {
				fmt.Fprintf(stdout, ", host id %s", s.HostID)
			}
			if s.FellBack {
				fmt.Fprint(stdout, ", fell back to the upload URL")
			}
			fmt.Fprintf(stdout, ", %s acknowledged", humanize.IBytes(uint64(s.Acked)))
			if s.Err != nil {
				fmt.Fprintf(stdout, ", left: %v", s.Err)
			}
			fmt.Fprintln(stdout)
		}
	}
	if res.ReplyURL != "" {
		dest := "discarded"
		if o.replyOut != "" {
			dest = "saved to " + o.replyOut
		}
		fmt.Fprintf(stdout, "reply: %s (%s), %s\n", res.ReplyURL, humanize.IBytes(uint64(res.ReplySize)), dest)
	}
	return nil
}
