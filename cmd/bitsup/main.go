// Command bitsup uploads files to a BITS upload server the way Windows
// BITS clients do, so that a deployment can be checked from any machine.
//
// Usage:
//
//	bitsup upload FILE URL [--fragment-size SIZE] [--user NAME] [--password-env VAR] [--reply-out FILE]
//	bitsup ping URL [--user NAME] [--password-env VAR]
//	bitsup cancel URL SESSION-ID [--user NAME] [--password-env VAR]
//
// upload shows a progress bar on a terminal and plain progress lines
// otherwise. The password is read from the environment variable named by
// --password-env, never from the command line. On failure bitsup exits
// with status 1 and names the BITS error: its HRESULT (such as
// BG_E_SESSION_NOT_FOUND) and its context.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

const usage = `usage:
  bitsup upload FILE URL [--fragment-size SIZE] [--user NAME] [--password-env VAR] [--reply-out FILE]
  bitsup ping URL [--user NAME] [--password-env VAR]
  bitsup cancel URL SESSION-ID [--user NAME] [--password-env VAR]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if _, ok := errors.AsType[usageError](err); ok {
			fmt.Fprintf(os.Stderr, "bitsup: %v\n%s", err, usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "bitsup: %v\n", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// options are the flags, which may appear anywhere on the command line.
type options struct {
	fragmentSize int64
	user         string
	passwordEnv  string
	replyOut     string
}

// parseArgs splits the command line into positional arguments and flags.
func parseArgs(args []string) ([]string, options, error) {
	var o options
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasValue {
			if i+1 >= len(args) {
				return nil, o, usageError{fmt.Sprintf("flag --%s needs a value", name)}
			}
			i++
			value = args[i]
		}
		switch name {
		case "fragment-size":
			n, err := humanize.ParseBytes(value)
			if err != nil || n == 0 {
				return nil, o, usageError{fmt.Sprintf("invalid --fragment-size %q", value)}
			}
			o.fragmentSize = int64(n)
		case "user":
			o.user = value
		case "password-env":
			o.passwordEnv = value
		case "reply-out":
			o.replyOut = value
		default:
			return nil, o, usageError{fmt.Sprintf("unknown flag %s", a)}
		}
	}
	return pos, o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command"}
	}
	cmd := args[0]
	pos, o, err := parseArgs(args[1:])
	if err != nil {
		return err
	}
	c := &client.Client{FragmentSize: o.fragmentSize, Username: o.user}
	if o.passwordEnv != "" {
		pw, ok := os.LookupEnv(o.passwordEnv)
		if !ok {
			return fmt.Errorf("environment variable %s is not set", o.passwordEnv)
		}
		c.Password = pw
	}
	switch cmd {
	case "upload":
		if len(pos) != 2 {
			return usageError{"upload needs FILE and URL"}
		}
		return upload(ctx, c, pos[0], pos[1], o, stdout)
	case "ping":
		if len(pos) != 1 {
			return usageError{"ping needs URL"}
		}
		if err := c.Ping(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s answers BITS pings\n", pos[0])
		return nil
	case "cancel":
		if len(pos) != 2 {
			return usageError{"cancel needs URL and SESSION-ID"}
		}
		id, err := protocol.ParseSessionID(pos[1])
		if err != nil {
			return usageError{fmt.Sprintf("session id %q: %v", pos[1], err)}
		}
		if err := c.Cancel(ctx, pos[0], id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "session %s cancelled\n", id.Wire())
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// upload uploads one file, showing progress, and saves the reply.
func upload(ctx context.Context, c *client.Client, path, url string, o options, stdout io.Writer) error {
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
	res, err := c.UploadFile(ctx, url, path, &opts)
	p.done()
	if err != nil {
		if res != nil && res.SessionID != "" && !res.Complete {
			return fmt.Errorf("%w (session %s; `bitsup cancel %s %s` discards it)", err, res.SessionID.Wire(), res.SessionURL, res.SessionID.Wire())
		}
		return err
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "uploaded %s (%s) to %s in %s, %s/s, session %s\n",
		path, humanize.IBytes(uint64(res.Size)), url, elapsed.Round(time.Millisecond),
		humanize.Bytes(uint64(float64(res.Size)/max(elapsed.Seconds(), 1e-9))), res.SessionID.Wire())
	if res.Restarts > 0 {
		fmt.Fprintf(stdout, "the server lost the session %d time(s); the upload started over\n", res.Restarts)
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
