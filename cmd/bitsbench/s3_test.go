package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1048576", 1 << 20},
		{"16MiB", 16 << 20},
		{"256MiB", 256 << 20},
		{"1GiB", 1 << 30},
		{"5MB", 5_000_000},
		{"64 MiB", 64 << 20},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "0", "0MiB", "-1", "-5MiB", "lots", "16 furlongs", "9EiB"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestSizeFlags(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	sizes := sizeList{256 << 20}
	part := byteSize(16 << 20)
	fs.Var(&sizes, "s3-size", "")
	fs.Var(&part, "s3-part-size", "")
	if err := fs.Parse([]string{"-s3-size", "256MiB, 64MiB", "-s3-part-size", "8MiB"}); err != nil {
		t.Fatal(err)
	}
	if want := (sizeList{256 << 20, 64 << 20}); !reflect.DeepEqual(sizes, want) {
		t.Errorf("sizes = %v, want %v", sizes, want)
	}
	if sizes.String() != "268435456,67108864" {
		t.Errorf("sizes.String() = %q", sizes.String())
	}
	if part != 8<<20 || part.String() != "8388608" {
		t.Errorf("part = %d (%q), want 8 MiB", part, part.String())
	}
	for _, args := range [][]string{{"-s3-size", "256MiB,"}, {"-s3-size", "0"}, {"-s3-part-size", "big"}} {
		if err := fs.Parse(args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestPartSizeFor(t *testing.T) {
	for _, tc := range []struct{ part, total, want int64 }{
		{16 << 20, 256 << 20, 16 << 20},
		{16 << 20, 1, 16 << 20},
		{16 << 20, 10_000 * 16 << 20, 16 << 20},
		{16 << 20, 10_000*16<<20 + 1, 17 << 20},
		{5 << 20, 1 << 40, 105 << 20}, // 1 TiB / 10,000 = 104.9 MiB
	} {
		if got := partSizeFor(tc.part, tc.total); got != tc.want {
			t.Errorf("partSizeFor(%d, %d) = %d, want %d", tc.part, tc.total, got, tc.want)
		}
	}
}

func TestFindVersitygw(t *testing.T) {
	exe := func(path string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	exe(filepath.Join(repo, "go.mod"))
	inRepo := exe(filepath.Join(repo, ".bin", "versitygw"))
	onPath := exe(filepath.Join(dir, "path", "versitygw"))
	fromEnv := exe(filepath.Join(dir, "env", "versitygw"))
	fromFlag := exe(filepath.Join(dir, "flag", "versitygw"))
	sub := filepath.Join(repo, "cmd", "x")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	t.Setenv("PATH", filepath.Dir(onPath))
	t.Setenv(versitygwEnv, fromEnv)

	check := func(flagValue, want string) {
		t.Helper()
		got, err := findVersitygw(flagValue)
		if err != nil || got != want {
			t.Errorf("findVersitygw(%q) = %q, %v; want %q", flagValue, got, err, want)
		}
	}
	check(fromFlag, fromFlag)
	check("", fromEnv)
	t.Setenv(versitygwEnv, "")
	check("", inRepo)
	if err := os.Remove(inRepo); err != nil {
		t.Fatal(err)
	}
	check("", onPath)
	t.Setenv("PATH", dir)
	_, err := findVersitygw("")
	if err == nil || !strings.Contains(err.Error(), "go install github.com/versity/versitygw/cmd/versitygw@") ||
		!strings.Contains(err.Error(), "-versitygw") || !strings.Contains(err.Error(), versitygwEnv) {
		t.Errorf("no versitygw: error %v does not say how to get one", err)
	}
	if _, err := findVersitygw(filepath.Join(dir, "missing")); err == nil {
		t.Error("a -versitygw that does not exist: no error")
	}
	t.Setenv(versitygwEnv, dir)
	if _, err := findVersitygw(""); err == nil {
		t.Errorf("$%s naming a directory: no error", versitygwEnv)
	}
}
