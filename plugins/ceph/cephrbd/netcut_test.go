package cephrbd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// linkCut runs the target's rbd-mirror in a network namespace of its own,
// joined to the host by a veth pair, so that the link between it and the
// source cluster can be cut and restored alone: the lab's daemons, the
// plugin and the test keep talking over loopback as before, and the
// rbd-mirror keeps reaching its own (target) cluster.
//
// All lab daemons listen on loopback addresses, and a Ceph client's
// connections leave from 127.0.0.1 (a client messenger never binds, so
// ms_bind_before_connect has no address to bind to), so nothing on the
// host's loopback tells rbd-mirror's traffic from site A's own. Inside
// the namespace it has an address of its own, and its routes to the
// sites' addresses go over the veth (route_localnet lets 127/8 cross it).
// The cut changes only the namespace: its route to the source's address
// goes to a neighbour that does not exist (a static ARP entry, so the
// host drops the frames as addressed to another host: packets vanish,
// as on a cut cable, rather than fail at once), and a rule drops what
// still comes from the source.
type linkCut struct {
	t        *testing.T
	ns       string
	nsDev    string
	hostDev  string
	nsAddr   string // the namespace's end of the veth
	hostAddr string // the host's end
	void     string // the neighbour nobody answers for
	ipA      string // the source cluster's address
	ipB      string // the target cluster's address
}

var monV2 = regexp.MustCompile(`v2:(127\.[0-9]+\.[0-9]+\.[0-9]+):3300`)

// siteAddr is the loopback address a lab site's mon listens on.
func siteAddr(t *testing.T, s labSite) string {
	t.Helper()
	conf, err := os.ReadFile(s.Conf)
	if err != nil {
		t.Fatal(err)
	}
	m := monV2.FindSubmatch(conf)
	if m == nil {
		t.Fatalf("no v2 mon address in %s", s.Conf)
	}
	return string(m[1])
}

// newLinkCut sets up the namespace and puts a wrapper named rbd-mirror
// first on PATH, so the rbd-mirror the plugin starts (by name, with the
// plugin's environment) runs inside it. Call it before the rig starts
// any rbd-mirror. It skips where namespaces cannot be made (no root).
// rate (tc's notation) limits what the host sends into the namespace,
// the source's data above all, as a cross-site link would.
func newLinkCut(t *testing.T, l lab, rate string) *linkCut {
	t.Helper()
	real, err := exec.LookPath("rbd-mirror")
	if err != nil {
		t.Fatalf("rbd-mirror: %v", err)
	}
	ipA, ipB := siteAddr(t, l.Sites[0]), siteAddr(t, l.Sites[1])
	// Names and the veth's /29 derive from IP_B, of which each lab has
	// its own: labs side by side on one machine do not collide.
	o := strings.Split(ipB, ".")
	o3, _ := strconv.Atoi(o[2])
	o4, _ := strconv.Atoi(o[3])
	idx := (o3*256 + o4) % 8192
	net := fmt.Sprintf("169.254.%d.%d", idx/32, idx%32*8)
	base := net[:strings.LastIndex(net, ".")+1]
	first, _ := strconv.Atoi(net[len(base):])
	tag := fmt.Sprintf("%d-%d", o3, o4)
	c := &linkCut{t: t, ns: "mcut-" + tag, nsDev: "mcn-" + tag, hostDev: "mch-" + tag,
		hostAddr: base + strconv.Itoa(first+1), nsAddr: base + strconv.Itoa(first+2), void: base + strconv.Itoa(first+6),
		ipA: ipA, ipB: ipB}
	_ = exec.Command("ip", "netns", "del", c.ns).Run() // a crashed run's
	if out, err := exec.Command("ip", "netns", "add", c.ns).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", c.ns).Run() })
	c.host("link", "add", c.hostDev, "type", "veth", "peer", "name", c.nsDev, "netns", c.ns)
	c.host("addr", "add", c.hostAddr+"/29", "dev", c.hostDev)
	c.host("link", "set", c.hostDev, "up")
	c.sysctl(false, "net.ipv4.conf."+c.hostDev+".route_localnet=1")
	c.tc("qdisc", "add", "dev", c.hostDev, "root", "handle", "1:", "htb", "default", "10", "r2q", "1000")
	c.tc("class", "add", "dev", c.hostDev, "parent", "1:", "classid", "1:10", "htb", "rate", rate)
	c.in("addr", "add", c.nsAddr+"/29", "dev", c.nsDev)
	c.in("link", "set", c.nsDev, "up")
	c.in("link", "set", "lo", "up")
	c.sysctl(true, "net.ipv4.conf."+c.nsDev+".route_localnet=1")
	// The namespace's lo would own all of 127/8: keep it to 127.0.0.1,
	// so the sites' addresses route over the veth.
	c.in("route", "del", "table", "local", "local", "127.0.0.0/8", "dev", "lo")
	c.in("neigh", "replace", c.void, "lladdr", "02:00:00:00:00:99", "dev", c.nsDev, "nud", "permanent")
	for _, ip := range []string{ipA, ipB} {
		c.in("route", "replace", ip+"/32", "via", c.hostAddr, "src", c.nsAddr)
	}
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", c.ns, real)
	if err := os.WriteFile(filepath.Join(dir, "rbd-mirror"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return c
}

func (c *linkCut) host(args ...string) {
	c.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		c.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (c *linkCut) tc(args ...string) {
	c.t.Helper()
	if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
		c.t.Fatalf("tc %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (c *linkCut) in(args ...string) {
	c.t.Helper()
	c.host(append([]string{"netns", "exec", c.ns, "ip"}, args...)...)
}

func (c *linkCut) sysctl(inNS bool, kv string) {
	c.t.Helper()
	args := []string{"sysctl", "-qw", kv}
	if inNS {
		args = append([]string{"ip", "netns", "exec", c.ns}, args...)
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// cut drops everything between the namespace and the source's address,
// both ways.
func (c *linkCut) cut() {
	c.t.Helper()
	c.in("route", "replace", c.ipA+"/32", "via", c.void, "src", c.nsAddr)
	c.in("rule", "add", "from", c.ipA, "iif", c.nsDev, "blackhole")
}

// restore undoes cut.
func (c *linkCut) restore() {
	c.t.Helper()
	c.in("route", "replace", c.ipA+"/32", "via", c.hostAddr, "src", c.nsAddr)
	c.in("rule", "del", "from", c.ipA, "iif", c.nsDev, "blackhole")
}

var backoffField = regexp.MustCompile(`\bbackoff:([0-9]+)`)

// conns lists the namespace's TCP connections to addr: one line of
// state and peer per connection, then its TCP info.
func (c *linkCut) conns(addr string) []string {
	c.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", c.ns, "ss", "-tniH", "dst", addr).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ss in %s: %v: %s", c.ns, err, out)
	}
	var conns []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.TrimSpace(line) == "":
		case !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t"):
			conns = append(conns, line)
		case len(conns) > 0:
			conns[len(conns)-1] += " " + strings.TrimSpace(line)
		}
	}
	return conns
}

// stalled is the event that shows a cut at work: a connection of
// rbd-mirror to the source that has had no answer through n
// retransmission timeouts in a row (TCP's backoff; a connect that
// gets no answer backs off alike).
func (c *linkCut) stalled(n int) bool {
	for _, conn := range c.conns(c.ipA) {
		if m := backoffField.FindStringSubmatch(conn); m != nil {
			if b, _ := strconv.Atoi(m[1]); b >= n {
				return true
			}
		}
	}
	return false
}
