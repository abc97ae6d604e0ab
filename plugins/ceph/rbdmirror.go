package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// asokTimeout bounds one question to rbd-mirror's admin socket.
const asokTimeout = 3 * time.Second

// asokCommand sends one command to a Ceph admin socket and returns the
// reply, speaking the admin socket protocol: a JSON command ended by a
// NUL byte, answered by a big-endian 32-bit length and that many bytes.
func asokCommand(ctx context.Context, path, command string) ([]byte, error) {
	d := net.Dialer{Timeout: 3 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	req, _ := json.Marshal(map[string]string{"prefix": command, "format": "json"})
	if _, err := c.Write(append(req, 0)); err != nil {
		return nil, err
	}
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if n > 64<<20 {
		return nil, fmt.Errorf("admin socket reply of %d bytes", n)
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(c, out); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out, nil
}

// imageReplayerState is what rbd-mirror's admin socket says of one image.
type imageReplayerState struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Description string `json:"description"`
}

// mirrorDaemon runs and supervises one rbd-mirror process for an
// environment's target cluster.
type mirrorDaemon struct {
	log     *slog.Logger
	envID   string
	runDir  string // <state>/run/<env>
	asok    string
	pidFile string
	args    []string
	env     []string
	paused  func() []string // pool/image names that must stay stopped
	cluster func() []string // admin sockets of every rbd-mirror on the target cluster

	mu       sync.Mutex
	pid      int
	stopping bool
	quit     chan struct{}
	done     chan struct{}
	starts   int
}

func (d *mirrorDaemon) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid > 0 && pidAlive(d.pid, d.asok)
}

// pidAlive says whether pid is a live rbd-mirror serving asok (a zombie
// has an empty cmdline and counts as gone).
func pidAlive(pid int, asok string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	cmd := string(b)
	return strings.Contains(cmd, "rbd-mirror") && strings.Contains(cmd, asok)
}

// readPid reads the pid recorded for the environment, if that process is
// still our rbd-mirror.
func (d *mirrorDaemon) readPid() int {
	b, err := os.ReadFile(d.pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !pidAlive(pid, d.asok) {
		return 0
	}
	return pid
}

// start launches the supervisor; it adopts a live rbd-mirror recorded in
// the pid file (left by an earlier plugin process).
func (d *mirrorDaemon) start() {
	d.quit = make(chan struct{})
	d.done = make(chan struct{})
	go d.supervise()
	go d.reapplyPauses()
}

func (d *mirrorDaemon) supervise() {
	defer close(d.done)
	backoff := time.Second
	for {
		if pid := d.readPid(); pid > 0 {
			d.mu.Lock()
			d.pid = pid
			d.mu.Unlock()
			d.log.Info("adopted a running rbd-mirror", "env", d.envID, "pid", pid)
			for pidAlive(pid, d.asok) {
				select {
				case <-d.quit:
					return
				case <-time.After(time.Second):
				}
			}
			d.log.Warn("rbd-mirror died; restarting it", "env", d.envID, "pid", pid)
		}
		select {
		case <-d.quit:
			return
		default:
		}
		begin := time.Now()
		// umask 077: rbd-mirror's logs and sockets stay private.
		cmd := exec.Command("/bin/sh", append([]string{"-c", `umask 077; exec rbd-mirror "$@"`, "rbd-mirror"}, d.args...)...)
		cmd.Env = d.env
		cmd.Dir = d.runDir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			d.log.Error("cannot start rbd-mirror", "env", d.envID, "error", err)
		} else {
			d.mu.Lock()
			d.pid = cmd.Process.Pid
			d.starts++
			d.mu.Unlock()
			_ = writePrivate(d.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"))
			d.log.Info("started rbd-mirror", "env", d.envID, "pid", cmd.Process.Pid)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				d.log.Warn("rbd-mirror exited; restarting it", "env", d.envID, "pid", cmd.Process.Pid, "error", err)
			case <-d.quit:
				<-exited
				return
			}
		}
		d.mu.Lock()
		d.pid = 0
		d.mu.Unlock()
		if time.Since(begin) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-d.quit:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// reapplyPauses keeps every paused image stopped on rbd-mirror's admin
// socket: rbd-mirror holds a stop in memory only, so after each restart
// (and whenever an image replayer appears) the stop is sent again.
func (d *mirrorDaemon) reapplyPauses() {
	recorded := 0 // the pid whose instance ids are remembered
	for {
		select {
		case <-d.quit:
			return
		case <-time.After(time.Second):
		}
		if !d.running() {
			continue
		}
		d.mu.Lock()
		pid := d.pid
		d.mu.Unlock()
		if pid != recorded && d.rememberInstances() {
			recorded = pid
		}
		for _, name := range d.paused() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, asok, err := replayerOf(ctx, d.cluster(), name)
			if err == nil && st.State != "Stopped" {
				_, err = asokCommand(ctx, asok, "rbd mirror stop "+name)
				if err == nil {
					d.log.Info("re-applied a pause on rbd-mirror", "env", d.envID, "image", name, "asok", asok)
				}
			}
			cancel()
		}
	}
}

// replayerOf finds, among the rbd-mirror daemons at asoks, the one that
// runs the image's replayer ("pool/image"), and what it says of it.
func replayerOf(ctx context.Context, asoks []string, name string) (imageReplayerState, string, error) {
	var first error
	for _, a := range asoks {
		st, err := imageStateAt(ctx, a, name)
		if err == nil {
			return st, a, nil
		}
		if first == nil {
			first = err
		}
	}
	return imageReplayerState{}, "", first
}

// tellAll sends cmd to every rbd-mirror at asoks; only the one running
// the image acts on it. Only ctx's end is an error.
func tellAll(ctx context.Context, asoks []string, cmd string) error {
	for _, a := range asoks {
		if _, err := asokCommand(ctx, a, cmd); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// foreignInstances returns the ids of rbd-mirror instances that replicate
// pool on the target cluster but are none of the daemons at asoks: another
// rbd-mirror (an operator's, a cephadm or Rook service) that the images
// of the pool are shared out with. Only the pool's leader knows every
// instance, so a leader that is not ours counts as foreign too. Instance
// ids our daemons had before a restart are remembered next to their
// sockets: a killed rbd-mirror stays listed until its heartbeats time out.
func foreignInstances(ctx context.Context, asoks []string, pool string) []string {
	ours := map[string]bool{}
	seen := map[string]bool{}
	for _, a := range asoks {
		for _, id := range knownInstances(a) {
			ours[id] = true
		}
		replayers, err := poolReplayersAt(ctx, a)
		if err != nil {
			continue
		}
		for _, p := range replayers {
			if p.InstanceID != "" {
				ours[p.InstanceID] = true
				rememberInstance(a, p.InstanceID)
			}
			if p.Pool != pool {
				continue
			}
			if p.LeaderID != "" {
				seen[p.LeaderID] = true
			}
			for _, id := range p.Instances {
				seen[id] = true
			}
		}
	}
	var foreign []string
	for id := range seen {
		if !ours[id] {
			foreign = append(foreign, id)
		}
	}
	slices.Sort(foreign)
	return foreign
}

// poolReplayer is one pool as the rbd-mirror daemon's status shows it:
// its own instance id there, the pool's leader and the instances the
// leader shares images out to (listed by the leader only).
type poolReplayer struct {
	Pool       string   `json:"pool"`
	InstanceID string   `json:"instance_id"`
	LeaderID   string   `json:"leader_instance_id"`
	Instances  []string `json:"instances"`
}

// poolReplayersAt asks the rbd-mirror at asok for its pool replayers.
func poolReplayersAt(ctx context.Context, asok string) ([]poolReplayer, error) {
	out, err := asokCommand(ctx, asok, "rbd mirror status")
	if err != nil {
		return nil, err
	}
	var st struct {
		PoolReplayers []poolReplayer `json:"pool_replayers"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("rbd-mirror status at %s: %w", asok, err)
	}
	return st.PoolReplayers, nil
}

// rememberInstances records the instance ids of the running rbd-mirror
// (one per pool it replicates), so foreignInstances still knows them as
// ours after it dies; false until it has joined a pool.
func (d *mirrorDaemon) rememberInstances() bool {
	ctx, cancel := context.WithTimeout(context.Background(), asokTimeout)
	defer cancel()
	replayers, err := poolReplayersAt(ctx, d.asok)
	if err != nil {
		return false
	}
	found := false
	for _, p := range replayers {
		if p.InstanceID != "" {
			rememberInstance(d.asok, p.InstanceID)
			found = true
		}
	}
	return found
}

// instancesFile lists the instance ids the rbd-mirror at asok has had.
func instancesFile(asok string) string { return filepath.Join(filepath.Dir(asok), "instances.json") }

func knownInstances(asok string) []string {
	var ids []string
	if b, err := os.ReadFile(instancesFile(asok)); err == nil {
		_ = json.Unmarshal(b, &ids)
	}
	return ids
}

// rememberInstance records id for the rbd-mirror at asok, keeping the
// last 16.
func rememberInstance(asok, id string) {
	ids := knownInstances(asok)
	if slices.Contains(ids, id) {
		return
	}
	ids = append(ids, id)
	if len(ids) > 16 {
		ids = ids[len(ids)-16:]
	}
	b, _ := json.Marshal(ids)
	_ = writePrivate(instancesFile(asok), b)
}

// imageStateAt asks the rbd-mirror at asok about one image ("pool/image").
func imageStateAt(ctx context.Context, asok, name string) (imageReplayerState, error) {
	var st imageReplayerState
	out, err := asokCommand(ctx, asok, "rbd mirror status "+name)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil || st.State == "" {
		return st, fmt.Errorf("rbd-mirror does not replay %s yet: %s", name, firstLine(out))
	}
	return st, nil
}

// stop ends the supervisor and the rbd-mirror process: TERM to its
// process group, KILL after 15 s; it returns once the process is gone.
func (d *mirrorDaemon) stop(ctx context.Context) error {
	d.mu.Lock()
	if !d.stopping {
		d.stopping = true
		close(d.quit)
	}
	d.mu.Unlock()
	pid := d.readPid()
	if pid == 0 {
		d.mu.Lock()
		pid = d.pid
		d.mu.Unlock()
	}
	if pid > 0 && pidAlive(pid, d.asok) {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		killAt := time.Now().Add(15 * time.Second)
		for pidAlive(pid, d.asok) {
			if time.Now().After(killAt) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("rbd-mirror (pid %d) still running: %w", pid, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := os.Remove(d.pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// pausedSet is the set of paused images of an environment, persisted in
// the state directory so a pause survives restarts of rbd-mirror and of
// the plugin. Each image ("pool/image") keeps the other names its
// replayer may have (pool/global-id while it bootstraps).
type pausedSet struct {
	mu   sync.Mutex
	path string
}

// load returns every replayer name that must stay stopped.
func (p *pausedSet) load() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for spec, aliases := range p.loadLocked() {
		names = append(names, spec)
		names = append(names, aliases...)
	}
	slices.Sort(names)
	return names
}

func (p *pausedSet) loadLocked() map[string][]string {
	set := map[string][]string{}
	b, err := os.ReadFile(p.path)
	if err != nil {
		return set
	}
	if json.Unmarshal(b, &set) != nil {
		var specs []string // the first format: a list of images
		_ = json.Unmarshal(b, &specs)
		for _, s := range specs {
			set[s] = nil
		}
	}
	return set
}

func (p *pausedSet) has(spec string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.loadLocked()[spec]
	return ok
}

// set pauses or unpauses the image spec; aliases are its replayer's other
// names.
func (p *pausedSet) set(spec string, paused bool, aliases ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.loadLocked()
	old, ok := set[spec]
	switch {
	case paused && (!ok || !slices.Equal(old, aliases)):
		set[spec] = aliases
	case !paused && ok:
		delete(set, spec)
	default:
		return nil
	}
	if err := ensureDir(filepath.Dir(p.path)); err != nil {
		return err
	}
	b, _ := json.Marshal(set)
	return writePrivate(p.path, b)
}
