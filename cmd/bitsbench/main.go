// Command bitsbench measures the bits_upload handler against a baseline
// in the same run: a bare net/http server that writes each fragment at its
// offset with no protocol checks and fsyncs each completed file once
// before renaming it into place (and, for reference, the same without the
// fsync). It reports throughput, the ratio to the baseline and the
// servers' peak resident memory.
//
// Usage:
//
//	bitsbench -caddy ./caddy [-scenarios large,small,huge,delivery] [-dir DIR]
//
// Scenarios:
//
//	large     4 × 256 MiB uploads in 1 MiB fragments, 4 sessions at a time
//	small     2,000 × 64 KiB uploads, 16 sessions at a time
//	huge      one 1 GiB upload in 1 MiB fragments (peak memory)
//	delivery  a 256 MiB upload delivered by value to a local application,
//	          against a plain POST of the same file from disk
//
// Every server runs as its own process, started fresh for each
// measurement, on 127.0.0.1. Each server is measured -runs times (3 by
// default), the servers taking turns, and the median run is reported, so
// that a passing disturbance of the machine does not decide a ratio.
// Sizes and counts can be changed with flags.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-baseline" {
		fs := flag.NewFlagSet("serve-baseline", flag.ExitOnError)
		addr := fs.String("addr", "127.0.0.1:0", "listen address")
		dir := fs.String("dir", "", "directory for uploads")
		noFsync := fs.Bool("no-fsync", false, "do not fsync completed files")
		_ = fs.Parse(os.Args[2:])
		if err := serveBaseline(*addr, *dir, *noFsync); err != nil {
			fmt.Fprintln(os.Stderr, "bitsbench:", err)
			os.Exit(1)
		}
		return
	}

	var cfg config
	flag.StringVar(&cfg.caddy, "caddy", "./caddy", "Caddy binary with the bits_upload module")
	flag.StringVar(&cfg.dir, "dir", "", "scratch directory (default: a new temporary directory)")
	scenarios := flag.String("scenarios", "large,small,huge,delivery", "comma-separated scenarios to run")
	flag.IntVar(&cfg.largeFiles, "large-files", 4, "large: number of files")
	flag.Int64Var(&cfg.largeSize, "large-size", 256<<20, "large: bytes per file")
	flag.IntVar(&cfg.largeConc, "large-concurrency", 4, "large: concurrent sessions")
	flag.IntVar(&cfg.smallFiles, "small-files", 2000, "small: number of files")
	flag.Int64Var(&cfg.smallSize, "small-size", 64<<10, "small: bytes per file")
	flag.IntVar(&cfg.smallConc, "small-concurrency", 16, "small: concurrent sessions")
	flag.Int64Var(&cfg.hugeSize, "huge-size", 1<<30, "huge: bytes of the single upload")
	flag.Int64Var(&cfg.deliverySize, "delivery-size", 256<<20, "delivery: bytes of the delivered upload")
	flag.Int64Var(&cfg.fragment, "fragment", 1<<20, "fragment size")
	flag.IntVar(&cfg.runs, "runs", 3, "measure each server this many times, alternating servers, and report the median")
	flag.Parse()

	if err := run(cfg, strings.Split(*scenarios, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bitsbench:", err)
		os.Exit(1)
	}
}
