package agent_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cdmdr/mirror/plugins/nfs/agent"
	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/internal/testpki"
)

var token = []byte("s3cret-t0ken")

// env is an agent on 127.0.0.1 serving a temporary directory.
type env struct {
	dir  string
	srv  *agent.Server
	http *httptest.Server
	log  *logBuf // the agent's logs
}

// logBuf holds logs written concurrently.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), log: &logBuf{}}
	srv, err := agent.New(agent.Config{Dir: e.dir, Token: token, Logger: newLogger(e.log)})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv)
	t.Cleanup(func() {
		e.http.Close()
		srv.Close()
	})
	return e
}

// addr is the agent's "ip:port".
func (e *env) addr() string { return e.http.Listener.Addr().String() }

// client returns a client of the agent with cfg's other settings.
func (e *env) client(t testing.TB, cfg agentproto.ClientConfig) *agentproto.Client {
	t.Helper()
	cfg.Address = e.addr()
	if cfg.Token == nil {
		cfg.Token = token
	}
	c, err := agentproto.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (e *env) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pattern is n bytes of non-zero, non-repeating data.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x>>24) | 1
	}
	return b
}

// localSums computes what the agent should report for data.
func localSums(data []byte, bs int) agentproto.Sums {
	n := agentproto.Blocks(int64(len(data)), bs)
	s := agentproto.Sums{Size: int64(len(data)), BlockSize: bs, Kinds: make([]agentproto.Kind, n), Sums: make([]agentproto.Sum, n)}
	for i := range n {
		blk := data[int(i)*bs : min(len(data), int(i+1)*bs)]
		if !bytes.Equal(blk, make([]byte, len(blk))) {
			s.Kinds[i] = agentproto.KindData
			s.Sums[i] = agentproto.SumOf(blk)
		}
	}
	return s
}

// rawGet sends a request with the given Authorization header (none if
// empty) and returns the status and body.
func rawDo(t testing.TB, method, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func agentTLS(p *testpki.PKI) (*tls.Config, error) {
	return agent.TLSConfig(p.CertFile, p.KeyFile, p.CAFile)
}

// newTLSServer serves e's agent over TLS with cfg.
func newTLSServer(e *env, cfg *tls.Config) *httptest.Server {
	ts := httptest.NewUnstartedServer(e.srv)
	ts.TLS = cfg
	ts.StartTLS()
	return ts
}
