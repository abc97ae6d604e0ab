package pluginhost

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Restarts of a plugin that keeps failing to start are spaced out,
// doubling from the first delay up to the last.
const (
	restartBackoffMin = time.Second
	restartBackoffMax = 30 * time.Second
	// healthTimeout bounds the check of whether a plugin still runs after
	// a call failed in a way that may mean it died.
	healthTimeout = time.Second
)

// defaultPath is the PATH of plugins when the daemon has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// instance is one running process of a plugin.
type instance struct {
	client *plugin.Client
	conn   *plugin.GRPCClient
	be     sdk.Backend
	info   sdk.Info
	pid    int
}

// managed is a loaded plugin: its file, pinned by checksum, and the
// process serving it, started again when it exits.
type managed struct {
	host *Host
	file string // base name in the directory
	path string // absolute
	sum  []byte
	set  Settings // the operator's, from Config.Plugins
	log  *slog.Logger
	port *backend

	mu       sync.Mutex
	cur      *instance     // nil while no process runs
	info     sdk.Info      // from the latest start
	starting chan struct{} // closed when the start under way ends
	lastErr  error         // why the latest start failed
	failures int           // starts failed in a row
	restarts int           // processes started after the first
	retryAt  time.Time     // no start before, after a failed one
	closed   bool
}

func newManaged(h *Host, path string, sum []byte) *managed {
	m := &managed{host: h, file: filepath.Base(path), path: path, sum: sum}
	m.set = h.cfg.Plugins[m.file]
	m.log = h.log.With("plugin", m.file)
	m.port = &backend{m: m}
	return m
}

// launch starts a process of the plugin, dispenses its backend and asks
// who it is.
func (m *managed) launch() (*instance, error) {
	cfg := m.host.cfg
	log := newHCLogger(m.log, m.file)
	stderr := &tailWriter{}
	cmd := exec.Command(m.path, m.set.Args...)
	cmd.Env = m.environment()
	// A process group of its own: Ctrl-C on the daemon's terminal must not
	// kill plugins under workers still calling them; the host stops them
	// itself, after the engine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(nil),
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: m.sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     cfg.StartTimeout,
		Logger:           log,
		// Before it is served, go-plugin logs the plugin's stderr through
		// Logger, and copies it here; once served, it writes here.
		Stderr:     stderr,
		SyncStderr: &lineWriter{log: log.Named(m.file), level: hclog.Info},
		SyncStdout: &lineWriter{log: log.Named(m.file), level: hclog.Debug},
	})
	inst, err := m.handshake(client)
	if err != nil {
		client.Kill() // after which all its stderr is read
		if last := stderr.lastLine(); last != "" && errors.Is(err, errExitedAtStart) {
			err = fmt.Errorf("%w (its last words on stderr: %q)", err, last)
		}
		return nil, err
	}
	return inst, nil
}

// environment is the plugin's: the daemon's holds secrets (etcd, NATS),
// so go-plugin is told to skip it (SkipHostEnv), and the plugin gets PATH,
// to find the tools it runs, and what its settings add.
func (m *managed) environment() []string {
	env := []string{"PATH=" + cmp.Or(m.set.Env["PATH"], os.Getenv("PATH"), defaultPath)}
	for _, k := range slices.Sorted(maps.Keys(m.set.Env)) {
		if k != "PATH" {
			env = append(env, k+"="+m.set.Env[k])
		}
	}
	if m.host.sockets != "" {
		env = append(env, plugin.EnvUnixSocketDir+"="+m.host.sockets)
	}
	return env
}

func (m *managed) handshake(client *plugin.Client) (*instance, error) {
	timeout := m.host.cfg.StartTimeout
	proto, err := client.Client()
	if err != nil {
		return nil, explainStart(err, timeout)
	}
	conn, ok := proto.(*plugin.GRPCClient)
	if !ok {
		return nil, fmt.Errorf("does not speak gRPC (only gRPC plugins are loaded)")
	}
	raw, err := proto.Dispense(sdk.PluginName)
	if err != nil {
		return nil, fmt.Errorf("serves no %q plugin: %w", sdk.PluginName, err)
	}
	be, ok := raw.(sdk.Backend)
	if !ok {
		return nil, fmt.Errorf("dispensed %T, not a storage backend", raw)
	}
	pid, _ := strconv.Atoi(client.ID())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	info, err := be.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("Info: %w", err)
	}
	if info.Name == "" || len(info.StorageTypes) == 0 {
		return nil, fmt.Errorf("Info names no plugin or no storage type (name %q, storage types %q)", info.Name, info.StorageTypes)
	}
	return &instance{client: client, conn: conn, be: be, info: info, pid: pid}, nil
}

// load starts the plugin for the first time.
func (m *managed) load() error {
	inst, err := m.launch()
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.cur, m.info = inst, inst.info
	m.mu.Unlock()
	return nil
}

// get returns the running process, starting one if the last exited, and
// waits for a start under way, within ctx.
func (m *managed) get(ctx context.Context) (*instance, error) {
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, &errPluginDown{"the plugin was unloaded (its file changed or was removed, or the daemon is stopping)"}
		}
		if m.cur != nil && !m.cur.client.Exited() {
			inst := m.cur
			m.mu.Unlock()
			return inst, nil
		}
		if m.starting == nil {
			if wait := time.Until(m.retryAt); m.cur == nil && m.lastErr != nil && wait > 0 {
				err := &errPluginDown{fmt.Sprintf("the plugin process exited and could not be started again (%v); next try in %v", m.lastErr, wait.Round(time.Millisecond))}
				m.mu.Unlock()
				return nil, err
			}
			m.restartLocked()
		}
		ch := m.starting
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// restartLocked drops the current process, if any, and starts another in
// the background. m.mu is held, m is not closed and no start is under way.
func (m *managed) restartLocked() {
	if old := m.cur; old != nil {
		m.cur = nil
		m.host.goKill(old)
	}
	m.starting = make(chan struct{})
	m.restarts++
	m.host.wg.Add(1)
	go func() {
		defer m.host.wg.Done()
		m.log.Warn("restarting plugin")
		inst, err := m.launch()
		m.mu.Lock()
		defer m.mu.Unlock()
		defer func() { close(m.starting); m.starting = nil }()
		if err != nil {
			m.lastErr = err
			m.failures++
			backoff := min(restartBackoffMin<<min(m.failures-1, 16), restartBackoffMax)
			m.retryAt = time.Now().Add(backoff)
			m.log.Error("plugin restart failed", "err", err, "next_try_in", backoff)
			return
		}
		if m.closed {
			m.host.goKill(inst)
			return
		}
		m.cur, m.info, m.lastErr, m.failures = inst, inst.info, nil, 0
		m.log.Info("plugin restarted", "pid", inst.pid)
	}()
}

// poke restarts the plugin at once if its process exited while idle.
func (m *managed) poke() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.starting != nil || m.cur == nil || !m.cur.client.Exited() {
		return
	}
	m.log.Warn("plugin process exited", "pid", m.cur.pid)
	m.restartLocked()
}

// dead says whether inst no longer serves (its process exited, or it does
// not answer gRPC health checks), and if so starts another process.
func (m *managed) dead(inst *instance) bool {
	if !inst.client.Exited() {
		ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
		defer cancel()
		_, err := healthpb.NewHealthClient(inst.conn.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: plugin.GRPCServiceName})
		if err == nil {
			return false
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == inst && !m.closed && m.starting == nil {
		m.log.Warn("plugin process exited", "pid", inst.pid)
		m.restartLocked()
	}
	return true
}

// close unloads the plugin: no process is started again, and the running
// one is stopped; it returns once it is.
func (m *managed) close() {
	m.mu.Lock()
	m.closed = true
	inst := m.cur
	m.cur = nil
	m.mu.Unlock()
	if inst != nil {
		inst.client.Kill()
	}
}

// displayName is the plugin's name, or its file's before it said.
func (m *managed) displayName() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.info.Name != "" && m.info.Name != m.file {
		return fmt.Sprintf("%s (%s)", m.info.Name, m.file)
	}
	return m.file
}

// status reports the plugin for Plugins.
func (m *managed) status() PluginStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := PluginStatus{
		Path: m.path, Name: m.info.Name, Version: m.info.Version,
		Types: append([]string(nil), m.info.StorageTypes...), State: StateRunning,
		Restarts: m.restarts,
	}
	switch {
	case m.closed:
		st.State = StateUnloaded
	case m.cur == nil || m.cur.client.Exited():
		st.State, st.Err = StateRestarting, m.lastErr
		if st.Err == nil {
			st.Err = errors.New("the plugin process exited; it is being restarted")
		}
	default:
		st.Pid = m.cur.pid
	}
	return st
}

// types are the storage types the plugin serves.
func (m *managed) types() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info.StorageTypes
}
