// Command bitsbench measures the bits_upload handler against a baseline
// in the same run: a bare net/http server that writes each fragment at its
// offset with no protocol checks and fsyncs each completed file once
// before renaming it into place. For reference it also measures the same
// that fsyncs the directory after the rename too (as keeping the name
// takes on some file systems), the same without any fsync, and the
// baseline's handler running inside Caddy (caddy-baseline,
// caddy-baseline-dirsync), which is the most any Caddy handler module can
// reach. It reports throughput, the ratio to the baseline, the CPU time of
// each server and of bitsbench itself, the servers' peak resident memory
// and the latency of their Acks.
//
// Usage:
//
//	bitsbench -caddy ./caddy [-scenarios small,tiny,large,small-client,huge,delivery] [-runs 3] [-dir DIR]
//	bitsbench -caddy ./caddy -scenarios syscalls [-syscall-files 1000] [-syscall-concurrency 1]
//	bitsbench -caddy ./caddy -scenarios s3 [-versitygw PATH] [-s3-files 4] [-s3-size 256MiB,64MiB] [-s3-part-size 16MiB]
//	bitsbench -url http://127.0.0.1:8080 [-pid PID] [-scenarios small]
//
// Scenarios:
//
//	small         2,000 × 64 KiB uploads, 16 sessions at a time
//	tiny          10,000 × 1 KiB uploads, 16 sessions at a time (the cost
//	              per request dominates)
//	large         4 × 256 MiB uploads in 1 MiB fragments, 4 sessions at a
//	              time
//	small-client  small, uploaded by the realistic client (package client,
//	              as bitsup uses it, with its Ping before each upload)
//	huge          one 1 GiB upload in 1 MiB fragments (peak memory)
//	delivery      a 256 MiB upload delivered by value to a local
//	              application, against a plain POST of the same file from
//	              disk
//	syscalls      the system calls per small upload of each server, counted
//	              by strace -c -f attached to the running server (needs
//	              strace; not run by default)
//	s3            4 × 256 MiB uploads in 1 MiB fragments, 4 sessions at a
//	              time, to Caddy with storage s3 in front of versitygw (an
//	              S3 gateway that keeps objects as files), against the same
//	              files sent straight to versitygw with the SDK's multipart
//	              API in parts of the same size, 4 at a time (needs
//	              versitygw; not run by default)
//
// All but small-client are driven by the lean load generator: raw HTTP/1.1
// on one kept-alive connection per session slot, one request in flight,
// request heads formatted into a reused buffer, bodies written from memory
// with writev, and every Ack checked (status, BITS-Packet-Type,
// BITS-Session-Id, BITS-Received-Content-Range, Content-Length). Each
// upload is Create-Session, its Fragments and Close-Session; -ping adds a
// Ping before each Create-Session. The servers that -minimal names (the
// fsync baseline by default) are driven a second time by the minimal
// generator, which parses nothing but the status line and the session id:
// when both drive a server to the same rate, the generator is not what
// limits it.
//
// Every server runs as its own process, started fresh for each
// measurement, on 127.0.0.1. Each server is measured -runs times (3 by
// default), the servers taking turns, after a sync, and the median run is
// reported, so that a passing disturbance of the machine does not decide a
// ratio; the Ack latencies are those of all runs. Every uploaded file is
// compared with its source by SHA-256. A run's files are then truncated,
// not deleted, until bitsbench exits (see retire). Sizes and counts can be
// changed with flags.
//
// Other servers can be measured in the same run with -peer
// name=cmdline, where {addr}, {port}, {dir} and {root} in the command line
// stand for the listen address, its port, a scratch directory and the
// directory uploads should land in (they are verified only when {root} is
// used). -url loads a server that is already running, with -pid naming
// its process for its CPU time and memory; uploads then go to fresh names
// under /bitsbench-<time>/ and are not verified. -cpuprofile writes
// bitsbench's own CPU profile, to check where the generator spends its
// time.
//
// The s3 scenario starts versitygw (the binary -versitygw names, else
// $CADDY_BITS_VERSITYGW, else .bin/versitygw of the repository, else
// versitygw on the PATH) on a free 127.0.0.1 port with a fresh directory
// under -dir, creates a bucket, and stops it at the end. It measures two
// paths into that bucket, taking turns: bits_upload, a fresh Caddy for
// each run whose bits_upload has a storage s3 block for the bucket,
// driven by the lean generator; and direct, bitsbench itself sending the
// same files with the SDK's CreateMultipartUpload, UploadPart and
// CompleteMultipartUpload, in parts of the size the storage uses
// (-s3-part-size), one part after the other, as many files at a time
// (-s3-concurrency). After each run every object is compared with its
// source by SHA-256, as the file the gateway keeps, and deleted. It
// reports the CPU time of Caddy, of versitygw and of bitsbench. -s3-size
// takes a list of sizes, each measured in turn, to show how Caddy's
// memory changes with the size of a file.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
)

func main() {
	// The baseline servers, which bitsbench runs as its own subprocesses.
	serveFuncs := map[string]func(addr, dir string, noFsync, dirFsync bool) error{
		"serve-baseline":       serveBaseline,
		"serve-caddy-baseline": serveCaddyBaseline,
	}
	if len(os.Args) > 1 && serveFuncs[os.Args[1]] != nil {
		fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
		addr := fs.String("addr", "127.0.0.1:0", "listen address")
		dir := fs.String("dir", "", "directory for uploads")
		noFsync := fs.Bool("no-fsync", false, "do not fsync completed files")
		dirFsync := fs.Bool("dir-fsync", false, "also fsync the destination directory after each rename")
		_ = fs.Parse(os.Args[2:])
		if err := serveFuncs[os.Args[1]](*addr, *dir, *noFsync, *dirFsync); err != nil {
			fmt.Fprintln(os.Stderr, "bitsbench:", err)
			os.Exit(1)
		}
		return
	}

	var cfg config
	flag.StringVar(&cfg.caddy, "caddy", "./caddy", "Caddy binary with the bits_upload module")
	flag.StringVar(&cfg.dir, "dir", "", "scratch directory (default: a new temporary directory)")
	scenarios := flag.String("scenarios", "small,tiny,large,small-client,huge,delivery", "comma-separated scenarios to run")
	servers := flag.String("servers", "bits_upload,baseline,caddy-baseline,baseline-dirsync,caddy-baseline-dirsync,baseline-nofsync", "comma-separated built-in servers to measure (bits_upload, baseline, baseline-nofsync, baseline-dirsync, caddy-baseline, caddy-baseline-dirsync)")
	minimal := flag.String("minimal", "baseline", "comma-separated servers to measure also with the minimal generator (none: empty)")
	flag.Var(&cfg.peers, "peer", "another server to measure, as name=cmdline (repeatable)")
	flag.IntVar(&cfg.largeFiles, "large-files", 4, "large: number of files")
	flag.Int64Var(&cfg.largeSize, "large-size", 256<<20, "large: bytes per file")
	flag.IntVar(&cfg.largeConc, "large-concurrency", 4, "large: concurrent sessions")
	flag.IntVar(&cfg.smallFiles, "small-files", 2000, "small, small-client: number of files")
	flag.Int64Var(&cfg.smallSize, "small-size", 64<<10, "small, small-client, syscalls: bytes per file")
	flag.IntVar(&cfg.smallConc, "small-concurrency", 16, "small, small-client: concurrent sessions")
	flag.IntVar(&cfg.tinyFiles, "tiny-files", 10000, "tiny: number of files")
	flag.Int64Var(&cfg.tinySize, "tiny-size", 1<<10, "tiny: bytes per file")
	flag.IntVar(&cfg.tinyConc, "tiny-concurrency", 16, "tiny: concurrent sessions")
	flag.Int64Var(&cfg.hugeSize, "huge-size", 1<<30, "huge: bytes of the single upload")
	flag.Int64Var(&cfg.deliverySize, "delivery-size", 256<<20, "delivery: bytes of the delivered upload")
	flag.Int64Var(&cfg.fragment, "fragment", 1<<20, "fragment size")
	flag.IntVar(&cfg.runs, "runs", 3, "measure each server this many times, alternating servers, and report the median")
	flag.BoolVar(&cfg.ping, "ping", false, "lean and minimal generators: send a Ping before each Create-Session")
	flag.IntVar(&cfg.syscallFiles, "syscall-files", 1000, "syscalls: number of uploads traced")
	flag.IntVar(&cfg.syscallConc, "syscall-concurrency", 1, "syscalls: concurrent sessions")
	flag.StringVar(&cfg.s3.versitygw, "versitygw", "", "s3: versitygw binary (default: $"+versitygwEnv+", else .bin/versitygw of the repository, else versitygw on the PATH)")
	flag.IntVar(&cfg.s3.files, "s3-files", 4, "s3: number of files")
	cfg.s3.sizes = sizeList{256 << 20}
	flag.Var(&cfg.s3.sizes, "s3-size", "s3: bytes per file, such as 256MiB; a comma-separated list measures each size in turn")
	flag.IntVar(&cfg.s3.conc, "s3-concurrency", 4, "s3: files uploaded at a time")
	cfg.s3.partSize = 16 << 20
	flag.Var(&cfg.s3.partSize, "s3-part-size", "s3: part size of the storage and of the direct uploads, such as 16MiB")
	flag.StringVar(&cfg.url, "url", "", "load this running server (http://host:port) instead of starting servers")
	flag.IntVar(&cfg.pid, "pid", 0, "with -url: the server's process, for its CPU time and memory")
	cpuProfile := flag.String("cpuprofile", "", "write bitsbench's own CPU profile to this file")
	flag.Parse()
	cfg.servers = strings.Split(*servers, ",")
	if *minimal != "" {
		cfg.minimal = strings.Split(*minimal, ",")
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bitsbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(cfg, strings.Split(*scenarios, ",")); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bitsbench:", err)
		os.Exit(1)
	}
}
