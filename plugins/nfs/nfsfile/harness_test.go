package nfsfile_test

import (
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agent"
	"github.com/cdmdr/mirror/plugins/nfs/nfsfile"
	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// volumeSize is the harness volume's size: big enough that a throttled
// first copy outlasts the kit's hold, small enough to copy in a moment.
const volumeSize = 8 << 20

// site is one harness's two shares and the agent serving the source.
type site struct {
	srcDir, tgtDir string
	token          string
	srv            *httptest.Server
	agent          *agent.Server
	gate           *gate
}

// newSite starts an agent over a fresh source directory.
func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{srcDir: t.TempDir(), tgtDir: t.TempDir(), token: "test-token-" + plugintest.NewUUID(), gate: newGate()}
	a, err := agent.New(agent.Config{Dir: s.srcDir, Token: []byte(s.token)})
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	s.agent = a
	s.srv = httptest.NewServer(s.gate.wrap(a))
	t.Cleanup(func() {
		s.gate.open()
		s.srv.Close()
		a.Close()
	})
	return s
}

// tokenFile writes the agent's token to a 0600 file for the metadata.
func (s *site) tokenFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.token")
	if err := os.WriteFile(p, []byte(s.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *site) agentAddr(t *testing.T) sdk.Agent {
	t.Helper()
	host, port, err := net.SplitHostPort(s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return sdk.Agent{IP: host, Port: uint16(p)}
}

// environment pairs the two directories; interval is the target's
// sync_interval.
func (s *site) environment(t *testing.T, interval string) sdk.Environment {
	t.Helper()
	src, _ := json.Marshal(map[string]any{"agent_token_file": s.tokenFile(t)})
	tgt, _ := json.Marshal(map[string]any{"directory": s.tgtDir, "sync_interval": interval})
	return sdk.Environment{
		ID:     "storage.11.13",
		Source: sdk.Storage{ClusterID: 5, StorageID: 11, Type: nfsfile.StorageType, BackendName: "nfs-a", Metadata: src},
		Target: sdk.Storage{ClusterID: 6, StorageID: 13, Type: nfsfile.StorageType, BackendName: "nfs-b", Metadata: tgt},
	}
}

// writeVolume writes a source volume file of size bytes: random data
// with a zero region in the middle, which should stay a hole.
func (s *site) writeVolume(t *testing.T, uuid string, size int) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	clear(data[size/4 : size/2])
	if err := os.WriteFile(filepath.Join(s.srcDir, "volume-"+uuid), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// gate sits in front of the agent: it can slow its answers, hold the
// data of block streams (a first copy that does not complete), or make
// every request hang as a lost site's would.
type gate struct {
	mu   sync.Mutex
	cut  *latch // every request waits on it
	hold *latch // block data beyond a stream's first holdAfter bytes waits on it
	rate int    // bytes per second of answers; 0: unthrottled
}

// holdAfter lets small answers (a probe, sums) through a hold.
const holdAfter = 64 << 10

func newGate() *gate { return &gate{cut: newLatch(), hold: newLatch()} }

func (g *gate) throttle(rate int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rate = rate
}

func (g *gate) open() {
	g.cut.open()
	g.hold.open()
}

func (g *gate) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.cut.wait(r) {
			return
		}
		g.mu.Lock()
		rate := g.rate
		g.mu.Unlock()
		h.ServeHTTP(&slowWriter{ResponseWriter: w, g: g, r: r, rate: rate}, r)
	})
}

// latch is open or closed; waiters pass once it is open.
type latch struct {
	mu sync.Mutex
	ch chan struct{} // closed while open
}

func newLatch() *latch {
	ch := make(chan struct{})
	close(ch)
	return &latch{ch: ch}
}

func (l *latch) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.ch:
		l.ch = make(chan struct{})
	default:
	}
}

func (l *latch) open() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.ch:
	default:
		close(l.ch)
	}
}

// wait waits until l is open or r ends; it reports whether l opened.
func (l *latch) wait(r *http.Request) bool {
	l.mu.Lock()
	ch := l.ch
	l.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
		return false
	}
}

// slowWriter writes at the gate's rate, and waits while the gate holds.
type slowWriter struct {
	http.ResponseWriter
	g       *gate
	r       *http.Request
	rate    int
	written int
}

func (s *slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if s.written >= holdAfter && !s.g.hold.wait(s.r) {
			return n, s.r.Context().Err()
		}
		chunk := min(len(p), 32<<10)
		w, err := s.ResponseWriter.Write(p[:chunk])
		n += w
		s.written += w
		if err != nil {
			return n, err
		}
		p = p[chunk:]
		if s.rate > 0 {
			select {
			case <-time.After(time.Duration(chunk) * time.Second / time.Duration(s.rate)):
			case <-s.r.Context().Done():
				return n, s.r.Context().Err()
			}
		}
	}
	return n, nil
}

func (s *slowWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
