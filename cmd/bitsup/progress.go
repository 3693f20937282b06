package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddy-bits/caddy-bits/client"
)

// progress shows upload progress: a bar redrawn in place on a terminal,
// or a plain line at most every two seconds otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	start    time.Time
	last     time.Time
	drawn    bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) update(pr client.Progress) {
	now := time.Now()
	if !p.terminal && now.Sub(p.last) < 2*time.Second && pr.Acked != pr.Total {
		return
	}
	p.last = now
	pct := 100.0
	if pr.Total > 0 {
		pct = float64(pr.Acked) * 100 / float64(pr.Total)
	}
	rate := float64(pr.Acked) / max(now.Sub(p.start).Seconds(), 1e-9)
	if !p.terminal {
		fmt.Fprintf(p.w, "%s of %s acknowledged (%.0f%%), %s/s\n",
			humanize.IBytes(uint64(pr.Acked)), humanize.IBytes(uint64(pr.Total)), pct, humanize.Bytes(uint64(rate)))
		return
	}
	const width = 30
	filled := int(pct / 100 * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	fmt.Fprintf(p.w, "\r[%s] %5.1f%% %s/%s %s/s   ", bar, pct,
		humanize.IBytes(uint64(pr.Acked)), humanize.IBytes(uint64(pr.Total)), humanize.Bytes(uint64(rate)))
	p.drawn = true
}

// done ends the bar's line.
func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
