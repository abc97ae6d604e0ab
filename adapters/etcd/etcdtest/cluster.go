package etcdtest

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is an etcd cluster of several embedded members on 127.0.0.1,
// each member's clients going through its own proxy (as Server's do), so a
// member can be killed and restarted while the others keep quorum.
type Cluster struct {
	members []*member
}

type member struct {
	name, dir        string
	clientPort, peer int
	initial          string // the --initial-cluster of every member
	proxy            *proxy

	mu sync.Mutex
	e  *embed.Etcd // nil while stopped
}

// StartCluster starts an n-member cluster for t, stopped at t's cleanup.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{}
	var initial []string
	for i := range n {
		m := &member{name: "m" + strconv.Itoa(i), dir: t.TempDir(), clientPort: ports[2*i], peer: ports[2*i+1]}
		pu := localURL(m.peer)
		initial = append(initial, m.name+"="+pu.String())
		c.members = append(c.members, m)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			m.stop()
			if m.proxy != nil {
				m.proxy.close()
			}
		}
		waitPeerConns()
	})
	for _, m := range c.members {
		m.initial = strings.Join(initial, ",")
		if m.proxy, err = newProxy(localURL(m.clientPort).Host); err != nil {
			t.Fatal(err)
		}
		// Members wait for each other to elect a leader: start all, then wait.
		if m.e, err = embed.StartEtcd(m.config()); err != nil {
			t.Fatalf("start member %s: %v", m.name, err)
		}
	}
	for _, m := range c.members {
		if err := m.ready(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (m *member) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cu, pu := localURL(m.clientPort), localURL(m.peer)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = m.initial
	cfg.InitialClusterToken = "etcdtest"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.EnableGRPCGateway = false
	return cfg
}

func (m *member) ready() error {
	select {
	case <-m.e.Server.ReadyNotify():
		return nil
	case err := <-m.e.Err():
		return fmt.Errorf("member %s: %w", m.name, err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("member %s: not ready within 30s", m.name)
	}
}

// Endpoints returns the client URLs of every member, through the proxies.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, "http://"+m.proxy.addr())
	}
	return out
}

// Leader returns the index of the running member that is the leader, or
// -1 when none is.
func (c *Cluster) Leader() int {
	for i, m := range c.members {
		m.mu.Lock()
		lead := m.e != nil && m.e.Server.Leader() == m.e.Server.MemberID()
		m.mu.Unlock()
		if lead {
			return i
		}
	}
	return -1
}

// Kill stops member i as a crash would: its clients are cut, its raft
// stops at once (no leadership transfer), its data stays.
func (c *Cluster) Kill(i int) { c.members[i].stop() }

func (m *member) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e == nil {
		return
	}
	if m.proxy != nil {
		m.proxy.setUp(false)
	}
	m.e.Server.HardStop() // before Close, whose graceful stop would hand the lead over
	m.e.Close()
	m.e = nil
}

// Restart starts a killed member again on its directory and ports; it
// rejoins the cluster. It does not wait for the cluster to have quorum.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.e != nil {
		t.Fatalf("member %s is running", m.name)
	}
	e, err := embed.StartEtcd(m.config())
	if err != nil {
		t.Fatalf("restart member %s: %v", m.name, err)
	}
	m.e = e
	m.proxy.setUp(true)
}

func localURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

// freePorts returns n ports of 127.0.0.1 free at the time of the call.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitPeerConns waits, up to 15 s, for the members' peer connections to
// end. Stopped members leave some open: an idle keep-alive connection of a
// peer's HTTP transport, and its server end, whose reads re-arm a 5 s
// deadline (rafthttp's ConnReadTimeout), so they close only when it
// passes. Waiting here keeps a leak check after the test meaningful.
func waitPeerConns() {
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		if n < len(buf) && !bytes.Contains(buf[:n], []byte("transport.timeoutConn")) &&
			!bytes.Contains(buf[:n], []byte("net/http.(*persistConn)")) {
			return
		}
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
}
