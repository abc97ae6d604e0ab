package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/internal/testpki"
)

// runMainEnv makes the test binary run main instead: the agent as a
// process of its own.
const runMainEnv = "GO_TEST_RUN_MIRROR_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

const token = "t0ken-from-a-file"

// lines collects a process's output and announces each line.
type lines struct {
	mu   sync.Mutex
	all  bytes.Buffer
	part []byte
	ch   chan string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case l.ch <- string(l.part[:i]):
		default: // nobody is waiting for this many lines
		}
		l.part = l.part[i+1:]
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// proc is the agent running as a process.
type proc struct {
	cmd  *exec.Cmd
	out  *lines
	addr string
	done chan error
}

// start runs the agent with args and env (besides a clean environment).
func start(t *testing.T, args []string, env ...string) *proc {
	t.Helper()
	p := &proc{out: &lines{ch: make(chan string, 100)}, done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append([]string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

// listening waits for the agent's "listening" log line and its address.
func (p *proc) listening(t *testing.T) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line := <-p.out.ch:
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				p.addr = rec.Addr
				return
			}
		case err := <-p.done:
			p.done <- err
			t.Fatalf("the agent exited (%v):\n%s", err, p.out)
		case <-timeout:
			t.Fatalf("the agent did not start listening:\n%s", p.out)
		}
	}
}

// exit waits for the process to end and returns its exit code.
func (p *proc) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(20 * time.Second):
		t.Fatalf("the agent did not exit:\n%s", p.out)
		return -1
	}
}

// setup writes a volume file and a token file of the given mode.
func setup(t *testing.T, size int, mode os.FileMode) (dir, tokenFile string, data []byte) {
	t.Helper()
	dir = t.TempDir()
	data = make([]byte, size)
	for i := range data {
		data[i] = byte(i*7) | 1
	}
	if err := os.WriteFile(filepath.Join(dir, "volume-a"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokenFile, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return dir, tokenFile, data
}

func newClient(t *testing.T, addr string, tlsCfg *tls.Config) *agentproto.Client {
	t.Helper()
	c, err := agentproto.NewClient(agentproto.ClientConfig{Address: addr, Token: []byte(token), TLS: tlsCfg, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestServesWithATokenFileAndStopsOnSIGTERM(t *testing.T) {
	dir, tokenFile, data := setup(t, 1<<20, 0o600)
	p := start(t, []string{"-dir", dir, "-listen", "127.0.0.1:0", "-token-file", tokenFile})
	p.listening(t)
	c := newClient(t, p.addr, nil)
	sums, err := c.Sums(context.Background(), "volume-a", 65536)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums.Sums) != 16 || sums.Sums[3] != agentproto.SumOf(data[3*65536:4*65536]) {
		t.Fatalf("sums of the file: %d blocks, block 3 wrong or missing", len(sums.Sums))
	}
	if _, err := c.Sums(context.Background(), "../volume-a", 65536); !errors.Is(err, agentproto.ErrRefused) {
		t.Fatalf("a path: %v, want ErrRefused", err)
	}
	bad, _ := agentproto.NewClient(agentproto.ClientConfig{Address: p.addr, Token: []byte("nope")})
	defer bad.Close()
	if _, err := bad.Sums(context.Background(), "volume-a", 65536); !errors.Is(err, agentproto.ErrUnauthorized) {
		t.Fatalf("a wrong token: %v, want ErrUnauthorized", err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.out)
	}
	out := p.out.String()
	if !strings.Contains(out, `"msg":"stopped"`) {
		t.Fatalf("no stop logged:\n%s", out)
	}
	if strings.Contains(out, token) {
		t.Fatal("the token reached the log")
	}
}

func TestSettingsFromTheEnvironment(t *testing.T) {
	dir, tokenFile, _ := setup(t, 8192, 0o400)
	p := start(t, nil, "MIRROR_AGENT_DIR="+dir, "MIRROR_AGENT_LISTEN=127.0.0.1:0", "MIRROR_AGENT_TOKEN_FILE="+tokenFile)
	p.listening(t)
	if _, err := newClient(t, p.addr, nil).Sums(context.Background(), "volume-a", 4096); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesATokenFileOthersCanRead(t *testing.T) {
	dir, tokenFile, _ := setup(t, 8192, 0o644)
	p := start(t, []string{"-dir", dir, "-listen", "127.0.0.1:0", "-token-file", tokenFile})
	if code := p.exit(t); code == 0 {
		t.Fatalf("exit code 0 with a 0644 token file:\n%s", p.out)
	}
	out := p.out.String()
	if !strings.Contains(out, "mode 0644: others can read it") || !strings.Contains(out, "0600") {
		t.Fatalf("no clear refusal of the token file:\n%s", out)
	}
	if strings.Contains(out, token) || strings.Contains(out, `"listening"`) {
		t.Fatalf("the token leaked or the agent listened:\n%s", out)
	}
}

func TestMutualTLSProcess(t *testing.T) {
	dir, tokenFile, _ := setup(t, 8192, 0o600)
	pk := testpki.New(t)
	p := start(t, []string{"-dir", dir, "-listen", "127.0.0.1:0", "-token-file", tokenFile,
		"-tls-cert", pk.CertFile, "-tls-key", pk.KeyFile, "-client-ca", pk.CAFile})
	p.listening(t)
	good := newClient(t, p.addr, &tls.Config{RootCAs: pk.CAPool, Certificates: []tls.Certificate{pk.Client}})
	if _, err := good.Sums(context.Background(), "volume-a", 4096); err != nil {
		t.Fatalf("a client with a certificate: %v", err)
	}
	bad := newClient(t, p.addr, &tls.Config{RootCAs: pk.CAPool})
	if _, err := bad.Sums(context.Background(), "volume-a", 4096); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	plain := newClient(t, p.addr, nil)
	if _, err := plain.Sums(context.Background(), "volume-a", 4096); err == nil {
		t.Fatal("a plain HTTP client was served")
	}
}

// TestKilledMidTransfer: an agent killed during a stream makes the
// transfer fail, never end as a short success.
func TestKilledMidTransfer(t *testing.T) {
	const size = 64 << 20
	dir, tokenFile, _ := setup(t, size, 0o600)
	p := start(t, []string{"-dir", dir, "-listen", "127.0.0.1:0", "-token-file", tokenFile})
	p.listening(t)
	c := newClient(t, p.addr, nil)
	blocks := 0
	_, err := c.Blocks(context.Background(), "volume-a", 65536, 0, size/65536, nil, func(agentproto.Block) error {
		blocks++
		if blocks == 1 {
			if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				return err
			}
			p.exit(t)
		}
		return nil
	})
	if err == nil {
		t.Fatalf("the transfer succeeded with %d of %d blocks after the agent was killed", blocks, size/65536)
	}
	if blocks >= size/65536 {
		t.Fatalf("all %d blocks arrived before the kill: the test proves nothing", blocks)
	}
	t.Logf("after %d blocks: %v", blocks, err)
}

func TestHelpAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	noEnv := func(string) string { return "" }
	if code := run(context.Background(), []string{"-h"}, noEnv, &out, &errOut); code != 0 || !strings.Contains(out.String(), "-token-file") {
		t.Fatalf("-h: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"-version"}, noEnv, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "mirror-agent ") {
		t.Fatalf("-version: exit %d, output %q", code, out.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"-dir", "x"}, noEnv, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "no token file") {
		t.Fatalf("no token file: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"-dir", "x", "-token-file", "t", "-client-ca", "ca"}, noEnv, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "needs TLS") {
		t.Fatalf("mTLS without TLS: exit %d, %q", code, errOut.String())
	}
}
