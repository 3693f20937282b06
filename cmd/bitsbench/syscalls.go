package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// syscallCount is one row of strace's summary.
type syscallCount struct {
	calls, errors int64
}

// syscallScenario counts the system calls each server makes per small
// upload: it starts the server, warms it up, attaches strace -c -f to it
// for cfg.syscallFiles uploads of cfg.smallSize bytes, cfg.syscallConc at
// a time, made by the lean generator, and divides strace's counts by the
// number of uploads. Calls that touch files are exact; the runtime's
// (futex, epoll, nanosleep, ...) depend on timing, which the tracing
// itself changes.
func syscallScenario(w io.Writer, cfg config, self, caddy string) error {
	strace, err := exec.LookPath("strace")
	if err != nil {
		return fmt.Errorf("counting system calls needs strace: %w", err)
	}
	data, err := content(cfg.smallSize)
	if err != nil {
		return err
	}
	var names []string
	counts := make(map[string]map[string]syscallCount)
	for _, t := range cfg.targets(genLean) {
		if t.gen != genLean {
			continue
		}
		name := t.server.name
		dir := filepath.Join(cfg.dir, "syscalls-"+name)
		syscall.Sync()
		srv, err := startServer(t.server, self, caddy, dir, "")
		if err != nil {
			return err
		}
		c, err := traceUploads(strace, srv, dir, &job{
			addr: srv.addr, data: data, files: cfg.syscallFiles, size: cfg.smallSize,
			fragment: cfg.fragment, conc: cfg.syscallConc, ping: cfg.ping,
		})
		srv.stop()
		if err == nil && srv.root != "" {
			err = verify(srv.root, data, cfg.syscallFiles, cfg.smallSize)
		}
		if err != nil {
			return fmt.Errorf("%s: %w (server log in %s)", name, err, dir)
		}
		os.RemoveAll(dir)
		names = append(names, name)
		counts[name] = c
	}
	reportSyscalls(w, cfg, names, counts)
	return nil
}

// traceUploads warms srv up with a few uploads, then runs j with strace
// attached to srv and returns strace's counts.
func traceUploads(strace string, srv *server, dir string, j *job) (map[string]syscallCount, error) {
	warm := *j
	warm.prefix, warm.files = "/warm", min(j.files, 64)
	if _, err := runLoad(genLean, &warm); err != nil {
		return nil, fmt.Errorf("warming up: %w", err)
	}

	out := filepath.Join(dir, "strace.txt")
	cmd := exec.Command(strace, "-c", "-f", "-o", out, "-p", strconv.Itoa(srv.pid))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting strace: %w", err)
	}
	// strace says "Process N attached" once it traces every thread.
	attached := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var msg []string
		for sc.Scan() {
			msg = append(msg, sc.Text())
			if strings.Contains(sc.Text(), "attached") {
				attached <- nil
				_, _ = io.Copy(io.Discard, stderr)
				return
			}
		}
		attached <- fmt.Errorf("strace did not attach: %s", strings.Join(msg, "; "))
	}()
	select {
	case err = <-attached:
	case <-time.After(10 * time.Second):
		err = errors.New("strace did not attach within 10s")
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	time.Sleep(100 * time.Millisecond)

	j.prefix = "/bench"
	_, lerr := runLoad(genLean, j)
	_ = cmd.Process.Signal(os.Interrupt)
	werr := cmd.Wait()
	if lerr != nil {
		return nil, lerr
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, fmt.Errorf("strace: %w (%v)", err, werr)
	}
	defer f.Close()
	return parseStraceSummary(f)
}

// parseStraceSummary parses the table that strace -c writes:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 50.00    0.000100          10        10         2 openat
//	...
//	------ ----------- ----------- --------- --------- ----------------
//	100.00    0.000200           5        40         2 total
//
// The total row is left out.
func parseStraceSummary(r io.Reader) (map[string]syscallCount, error) {
	counts := make(map[string]syscallCount)
	sc := bufio.NewScanner(r)
	header := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "% time") {
			header = true
			continue
		}
		if !header || line == "" || strings.HasPrefix(line, "---") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 5 && len(f) != 6 {
			return nil, fmt.Errorf("strace summary line %q", line)
		}
		name := f[len(f)-1]
		if name == "total" {
			continue
		}
		var c syscallCount
		var err error
		if c.calls, err = strconv.ParseInt(f[3], 10, 64); err != nil {
			return nil, fmt.Errorf("strace summary line %q: %w", line, err)
		}
		if len(f) == 6 {
			if c.errors, err = strconv.ParseInt(f[4], 10, 64); err != nil {
				return nil, fmt.Errorf("strace summary line %q: %w", line, err)
			}
		}
		counts[name] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !header {
		return nil, errors.New("no strace summary")
	}
	return counts, nil
}

// runtimeCalls are the system calls of the Go runtime's scheduling,
// signals and memory management. Their number depends on timing, which
// tracing changes, more than on the work of an upload.
var runtimeCalls = map[string]bool{
	"futex": true, "nanosleep": true, "epoll_pwait": true, "epoll_wait": true, "sched_yield": true,
	"tgkill": true, "getpid": true, "gettid": true, "rt_sigreturn": true, "rt_sigprocmask": true,
	"rt_sigaction": true, "sigaltstack": true, "mmap": true, "munmap": true, "madvise": true,
	"mprotect": true, "clone": true, "clone3": true, "rseq": true, "set_robust_list": true,
	"restart_syscall": true, "sched_getaffinity": true, "getrlimit": true, "prlimit64": true,
}

// reportSyscalls prints the calls per upload of each server side by side,
// those of the upload's own work first and the runtime's after them, each
// most frequent in the first server first, with failed calls in brackets.
func reportSyscalls(w io.Writer, cfg config, names []string, counts map[string]map[string]syscallCount) {
	if len(names) == 0 {
		return
	}
	n := float64(cfg.syscallFiles)
	all := make(map[string]bool)
	for _, c := range counts {
		for s := range c {
			all[s] = true
		}
	}
	var work, rt []string
	for s := range all {
		if runtimeCalls[s] {
			rt = append(rt, s)
		} else {
			work = append(work, s)
		}
	}
	first := counts[names[0]]
	byCount := func(calls []string) {
		sort.Slice(calls, func(i, j int) bool {
			a, b := first[calls[i]].calls, first[calls[j]].calls
			if a != b {
				return a > b
			}
			return calls[i] < calls[j]
		})
	}
	byCount(work)
	byCount(rt)

	fmt.Fprintf(w, "system calls per upload of %d bytes, %d uploads, %d at a time (failed calls in brackets)\n",
		cfg.smallSize, cfg.syscallFiles, cfg.syscallConc)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "syscall\t")
	for _, name := range names {
		fmt.Fprintf(tw, "%s\t", name)
	}
	fmt.Fprintln(tw)
	totals := make([]float64, len(names))
	group := func(title string, calls []string) {
		sub := make([]float64, len(names))
		for _, s := range calls {
			fmt.Fprintf(tw, "%s\t", s)
			for k, name := range names {
				c := counts[name][s]
				sub[k] += float64(c.calls) / n
				switch {
				case c.calls == 0:
					fmt.Fprint(tw, "-\t")
				case float64(c.errors)/n >= 0.005:
					fmt.Fprintf(tw, "%.2f (%.2f)\t", float64(c.calls)/n, float64(c.errors)/n)
				default:
					fmt.Fprintf(tw, "%.2f\t", float64(c.calls)/n)
				}
			}
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s\t", title)
		for k, t := range sub {
			fmt.Fprintf(tw, "%.2f\t", t)
			totals[k] += t
		}
		fmt.Fprintln(tw)
	}
	group("= upload's own calls", work)
	fmt.Fprintln(tw, "\t")
	group("= runtime calls (vary with timing)", rt)
	fmt.Fprint(tw, "= total\t")
	for _, t := range totals {
		fmt.Fprintf(tw, "%.2f\t", t)
	}
	fmt.Fprintln(tw)
	tw.Flush()
	fmt.Fprintln(w)
}
