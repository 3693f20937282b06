package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/caddy-bits/caddy-bits/internal/repodir"
)

// VersitygwEnv names the environment variable that points the tests at a
// versitygw binary (an S3 gateway that keeps objects as plain files).
const VersitygwEnv = "CADDY_BITS_VERSITYGW"

// S3Server is a versitygw S3 gateway serving a fresh directory on a
// loopback port, with one bucket, for a test.
type S3Server struct {
	// Endpoint is the gateway's URL, such as "http://127.0.0.1:40123".
	Endpoint string
	// AccessKey and SecretKey are the credentials of its root user.
	AccessKey string
	SecretKey string
	// Bucket is the bucket created for the test.
	Bucket string
	// Dir is the directory the gateway keeps its buckets in.
	Dir string

	t    testing.TB
	bin  string
	addr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *SyncBuffer
}

// StartS3 starts versitygw on a free 127.0.0.1 port with a new directory,
// waits until it answers, creates a bucket, and stops it when the test
// ends. The binary is $CADDY_BITS_VERSITYGW, or else .bin/versitygw in the
// repository (where test.sh installs it). Without either, the test is
// skipped; a binary named by the variable that does not work fails it.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	bin := os.Getenv(VersitygwEnv)
	if bin == "" {
		var err error
		bin, err = repodir.Bin("versitygw")
		if err != nil {
			t.Skipf("skipped: no versitygw: %s is not set, and the repository was not found: %v", VersitygwEnv, err)
		}
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("skipped: no versitygw: %s is not set and %s does not exist (test.sh installs it)", VersitygwEnv, bin)
		}
	} else if fi, err := os.Stat(bin); err != nil || fi.IsDir() { //nolint:gosec // the tester's own setting
		t.Fatalf("%s=%s: not a versitygw binary: %v", VersitygwEnv, bin, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	s := &S3Server{
		Endpoint:  "http://" + addr,
		AccessKey: "bits" + randomHex(6),
		SecretKey: randomHex(20),
		Bucket:    "bits-test",
		Dir:       t.TempDir(),
		t:         t,
		bin:       bin,
		addr:      addr,
	}
	t.Cleanup(s.Stop)
	s.Start()
	if err := s.request(http.MethodPut, "/"+s.Bucket); err != nil {
		t.Fatalf("creating bucket %s: %v", s.Bucket, err)
	}
	return s
}

// Start starts the gateway again after Stop, on the same port and
// directory, and waits until it answers.
func (s *S3Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin, "--port", s.addr, "--quiet", "--keep-alive", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	s.out = &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := s.request(http.MethodGet, "/")
		if err == nil {
			return
		}
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("%s exited: %s", s.bin, s.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not answer on %s: %v; output: %s", s.bin, s.addr, err, s.out.String())
		}
	}
}

// Stop kills the gateway, as a crash or an outage would, and waits until
// it is gone. Calling it again does nothing.
func (s *S3Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// request sends one signed request without a body, and fails unless the
// answer is a success.
func (s *S3Server) request(method, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.Endpoint+path, nil)
	if err != nil {
		return err
	}
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	creds := aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptySHA256, "s3", "us-east-1", time.Now()); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, body)
	}
	return nil
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
