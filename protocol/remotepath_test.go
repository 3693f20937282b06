package protocol

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCleanRemotePathValid checks the exact relative path produced for
// accepted request paths.
func TestCleanRemotePathValid(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"/a.bin", "a.bin"},
		{"/dir/sub/file.txt", "dir/sub/file.txt"},
		{"/upload/rfc2119.txt", "upload/rfc2119.txt"},
		{"/my%20file.bin", "my file.bin"},
		{"/%C3%A9t%C3%A9.txt", "été.txt"},
		{"/%c3%a9t%c3%a9.txt", "été.txt"},
		{"/dir%20one/file%20two.bin", "dir one/file two.bin"},
		{"/%41%42%43.txt", "ABC.txt"},
		{"/a+b.txt", "a+b.txt"},
		{"/100%25.txt", "100%.txt"},
		{"/.hidden", ".hidden"},
		{"/a..b", "a..b"},
		{"/...", "..."},
		{"/%2e%2e%2e", "..."},
		{"/..hidden/file", "..hidden/file"},
		{"/file.", "file."},
		{"/a%3Bb", "a;b"},
		{"/%E6%97%A5%E6%9C%AC/%E8%AA%9E.txt", "日本/語.txt"},
		{"/" + strings.Repeat("a", MaxNameLength), strings.Repeat("a", MaxNameLength)},
		{"/" + strings.Repeat(strings.Repeat("a", 255)+"/", 15) + strings.Repeat("b", 255), strings.Repeat(strings.Repeat("a", 255)+"/", 15) + strings.Repeat("b", 255)},
	}
	for _, tc := range tests {
		got, err := CleanRemotePath(tc.in)
		if err != nil {
			t.Errorf("CleanRemotePath(%.80q) error = %v, want %.80q", tc.in, err, tc.want)
			continue
		}
		if got != tc.want {
			t.Errorf("CleanRemotePath(%.80q) = %.80q, want %.80q", tc.in, got, tc.want)
		}
	}
}

// TestCleanRemotePathDirectory checks that the forms naming a directory are
// refused with ErrDirectoryTarget, which callers answer with 400.
func TestCleanRemotePathDirectory(t *testing.T) {
	for _, in := range []string{"/", "/dir/", "/dir/sub/", "//", "/a%20b/"} {
		got, err := CleanRemotePath(in)
		if !errors.Is(err, ErrDirectoryTarget) {
			t.Errorf("CleanRemotePath(%q) = %q, %v; want ErrDirectoryTarget", in, got, err)
		}
		if got != "" {
			t.Errorf("CleanRemotePath(%q) returned %q with its error, want empty", in, got)
		}
	}
}

// TestCleanRemotePathEmptyIsDirectory checks the documented rule that an
// empty path, like "/", names the upload root and yields ErrDirectoryTarget.
func TestCleanRemotePathEmptyIsDirectory(t *testing.T) {
	got, err := CleanRemotePath("")
	if err == nil {
		t.Fatalf(`CleanRemotePath("") = %q, want an error`, got)
	}
	if !errors.Is(err, ErrDirectoryTarget) {
		t.Fatalf(`CleanRemotePath("") returns %q instead of ErrDirectoryTarget, `+
			"although its doc comment and ErrDirectoryTarget's say an empty path names a directory", err)
	}
}

// TestCleanRemotePathInvalid checks that traversal, smuggled separators,
// control characters, empty segments, relative paths, bad escapes and
// over-long paths are refused, and not as directory targets.
func TestCleanRemotePathInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"relative", "relative"},
		{"relative with slash", "a/b"},
		{"relative dot-dot", "../x"},
		{"backslash rooted", "\\a"},
		{"dot-dot first", "/../x"},
		{"dot-dot only", "/.."},
		{"dot only", "/."},
		{"dot-dot inner", "/a/../b"},
		{"dot-dot last", "/a/.."},
		{"dot inner", "/a/./b"},
		{"dot last", "/a/."},
		{"encoded dot-dot", "/%2e%2e/x"},
		{"encoded dot-dot upper", "/%2E%2E/x"},
		{"half-encoded dot-dot", "/.%2e/x"},
		{"other half-encoded dot-dot", "/%2e./x"},
		{"encoded dot", "/%2e/x"},
		{"encoded slash", "/a%2fb"},
		{"encoded slash upper", "/a%2Fb"},
		{"encoded slash traversal", "/..%2f..%2fetc%2fpasswd"},
		{"encoded backslash", "/a%5cb"},
		{"encoded backslash upper", "/a%5Cb"},
		{"encoded backslash traversal", "/..%5c..%5cwindows%5cwin.ini"},
		{"literal backslash", "/a\\b"},
		{"literal backslash traversal", "/..\\x"},
		{"encoded NUL", "/a%00b"},
		{"encoded NUL suffix", "/a.bin%00.txt"},
		{"literal NUL", "/a\x00b"},
		{"encoded newline", "/a%0ab"},
		{"encoded carriage return", "/a%0db"},
		{"encoded tab", "/a%09b"},
		{"encoded unit separator", "/a%1fb"},
		{"encoded DEL", "/a%7fb"},
		{"literal newline", "/a\nb"},
		{"leading double slash", "//etc/passwd"},
		{"inner double slash", "/a//b"},
		{"triple slash", "///a"},
		{"invalid escape", "/%zz"},
		{"invalid escape second digit", "/%2g"},
		{"truncated escape", "/a%2"},
		{"lone percent", "/a%"},
		{"invalid escape in later segment", "/ok/%zz/file"},
		{"too long", "/" + strings.Repeat("a", MaxRemotePathLength)},
		{"too long with segments", strings.Repeat("/ab", MaxRemotePathLength/3+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CleanRemotePath(tc.in)
			if err == nil {
				t.Fatalf("CleanRemotePath(%.80q) = %.80q, want an error", tc.in, got)
			}
			if errors.Is(err, ErrDirectoryTarget) {
				t.Fatalf("CleanRemotePath(%.80q) error = ErrDirectoryTarget, want another error", tc.in)
			}
			if got != "" {
				t.Fatalf("CleanRemotePath(%.80q) returned %.80q with its error, want empty", tc.in, got)
			}
		})
	}
}

// TestCleanRemotePathLengthLimit checks the boundary of MaxRemotePathLength,
// measured on the escaped form.
func TestCleanRemotePathLengthLimit(t *testing.T) {
	if MaxRemotePathLength != 4096 {
		t.Fatalf("MaxRemotePathLength = %d, want 4096", MaxRemotePathLength)
	}
	// Segments of 85 escaped letters (255 bytes), 84 decoded letters and
	// a slash each, up to exactly the limit.
	seg := strings.Repeat("%41", 84) + "/"
	atLimit := "/" + strings.Repeat(seg, (MaxRemotePathLength-1)/len(seg))
	atLimit += strings.Repeat("b", MaxRemotePathLength-len(atLimit))
	if len(atLimit) != MaxRemotePathLength {
		t.Fatalf("test path has %d bytes, want %d", len(atLimit), MaxRemotePathLength)
	}
	got, err := CleanRemotePath(atLimit)
	if err != nil {
		t.Fatalf("path of exactly %d escaped bytes: error = %v", MaxRemotePathLength, err)
	}
	want := strings.Repeat(strings.Repeat("A", 84)+"/", (MaxRemotePathLength-1)/len(seg)) + strings.Repeat("b", MaxRemotePathLength-1-(MaxRemotePathLength-1)/len(seg)*len(seg))
	if got != want {
		t.Fatalf("path of exactly %d escaped bytes decoded to %d bytes, want %d", MaxRemotePathLength, len(got), len(want))
	}
	if _, err := CleanRemotePath(atLimit + "c"); err == nil {
		t.Fatalf("path of %d escaped bytes accepted, want an error", MaxRemotePathLength+1)
	}
}

// TestCleanRemotePathRejectsInvalidUTF8 checks the documented refusal of
// paths that are not UTF-8-safe. Invalid UTF-8, such as the overlong
// encoding of "/" (%C0%AF) used in old IIS traversal attacks, must not reach
// the file system, where Windows would turn every invalid byte into U+FFFD
// and so map different URLs to one file.
func TestCleanRemotePathRejectsInvalidUTF8(t *testing.T) {
	var accepted []string
	for _, in := range []string{
		"/%ff.bin",
		"/%C0%AF.bin",        // Overlong "/".
		"/..%C0%AF..%C0%AFx", // Overlong "/" used for traversal.
		"/%ED%A0%80.bin",     // UTF-16 surrogate half.
		"/%C3.bin",           // Truncated sequence.
	} {
		if got, err := CleanRemotePath(in); err == nil {
			if utf8.ValidString(got) {
				t.Fatalf("CleanRemotePath(%q) = %+q is valid UTF-8; the test input is wrong", in, got)
			}
			accepted = append(accepted, fmt.Sprintf("%q -> %+q", in, got))
		}
	}
	if len(accepted) > 0 {
		t.Fatalf("CleanRemotePath does not check UTF-8 validity although its doc comment says "+
			"paths that are not UTF-8-safe are refused; accepted: %s", strings.Join(accepted, ", "))
	}
}

// TestErrDirectoryTargetWrapped checks that ErrDirectoryTarget is returned
// as the sentinel itself, so both == and errors.Is work.
func TestErrDirectoryTargetWrapped(t *testing.T) {
	_, err := CleanRemotePath("/dir/")
	if err != ErrDirectoryTarget {
		t.Fatalf("CleanRemotePath(%q) error = %v, want ErrDirectoryTarget itself", "/dir/", err)
	}
}

// TestCleanRemotePathNameLength refuses a segment longer than a file name
// may be, counted in decoded bytes, before any parent exists.
func TestCleanRemotePathNameLength(t *testing.T) {
	ok := []string{
		"/" + strings.Repeat("a", MaxNameLength),
		"/new/dirs/" + strings.Repeat("%C3%A9", MaxNameLength/2) + "x",
	}
	for _, p := range ok {
		if _, err := CleanRemotePath(p); err != nil {
			t.Errorf("CleanRemotePath(%.40q…) = %v, want it accepted", p, err)
		}
	}
	bad := []string{
		"/" + strings.Repeat("a", MaxNameLength+1),
		"/new/" + strings.Repeat("a", MaxNameLength+1) + "/f.bin",
		"/" + strings.Repeat("%C3%A9", MaxNameLength/2+1),
		"/" + strings.Repeat("%61", MaxNameLength+1),
	}
	for _, p := range bad {
		if _, err := CleanRemotePath(p); err == nil {
			t.Errorf("CleanRemotePath(%.40q…) accepted a name over %d bytes", p, MaxNameLength)
		}
	}
}
