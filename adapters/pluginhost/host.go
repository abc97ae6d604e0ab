package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// Config configures a Host.
type Config struct {
	// Dir is the plugin directory: every regular, executable, non-hidden
	// file in it is a plugin.
	Dir string
	// CallTimeout caps each backend call; default 10m.
	CallTimeout time.Duration
	// StartTimeout caps a plugin's start: handshake and Info; default 30s.
	StartTimeout time.Duration
	// RescanInterval is how often Dir is read again; default 10s.
	RescanInterval time.Duration
	// Plugins holds, by file name in Dir, what each plugin is started
	// with (at load and at every restart).
	Plugins map[string]Settings
}

// Settings are what the operator gives one plugin: so two daemons on one
// machine, or two tests, can keep separate plugin state.
type Settings struct {
	// Args follow the executable on its command line. They show in ps:
	// never a secret.
	Args []string
	// Env is added to the plugin's environment, which otherwise holds only
	// the daemon's PATH; a PATH here replaces it. The host logs the
	// names, never the values: they may be secrets.
	Env map[string]string
}

func (c Config) withDefaults() Config {
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Minute
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.RescanInterval <= 0 {
		c.RescanInterval = 10 * time.Second
	}
	return c
}

// State is where a plugin file stands.
type State string

// States of a plugin file.
const (
	// StateRunning: loaded, its process runs.
	StateRunning State = "running"
	// StateRestarting: loaded, its process exited and another is being
	// started (Err says why the last start failed, if it did).
	StateRestarting State = "restarting"
	// StateRefused: not loaded; Err says why.
	StateRefused State = "refused"
	// StateUnloaded: was loaded, then its file changed or went away, or
	// the host closed.
	StateUnloaded State = "unloaded"
)

// PluginStatus describes one file of the plugin directory (or, refused,
// the directory itself).
type PluginStatus struct {
	Path    string
	Name    string // as the plugin's Info says; empty if never started
	Version string
	Types   []string // storage types it claims
	State   State
	// Err says why the plugin is refused or not running, or which of its
	// storage types it serves not because another plugin claims them too.
	Err error
	// Pid is the plugin's process id while StateRunning.
	Pid int
	// Restarts counts the starts of another process after the first
	// (tried, whether or not they succeeded), since the file was loaded.
	Restarts int
}

// Host loads the storage plugins of a directory, keeps their processes
// running, and routes each storage type to the plugin serving it.
type Host struct {
	cfg Config
	dir string
	log *slog.Logger
	// sockets is where the plugins create their unix sockets, removed by
	// Close: a plugin killed (crashed, or stopped by the host) cannot
	// remove its own, which would pile up in the temporary directory.
	sockets string

	scanned  chan struct{} // closed after the first scan
	scanOnce sync.Once
	closing  chan struct{}
	wg       sync.WaitGroup // scans, starts and kills under way

	mu      sync.Mutex
	entries map[string]*entry // by file name
	dirErr  error
	closed  bool
	// unmatched are the names of Config.Plugins no file of the directory
	// has, as the last scan found them (each warned about once).
	unmatched map[string]bool
}

var _ ports.Backends = (*Host)(nil)

// New returns a host for the plugins of cfg.Dir. Nothing is loaded until
// Run.
func New(cfg Config, log *slog.Logger) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := cfg.Dir
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &Host{
		cfg: cfg.withDefaults(), dir: dir, log: log, sockets: socketDir(log),
		scanned: make(chan struct{}), closing: make(chan struct{}),
		entries: map[string]*entry{},
	}
}

// maxSocketDir is the longest directory a plugin's unix socket fits in:
// the kernel's 108-byte sun_path, less its NUL and the name go-plugin
// gives the socket ("/plugin" and up to 10 digits).
const maxSocketDir = 108 - 1 - len("/plugin") - 10

// socketDir makes the host's own directory for its plugins' sockets, in
// the temporary directory, or in /tmp when that one's path is too long
// for a socket (a plugin could not listen there); "" when neither works
// (go-plugin then uses the temporary directory itself).
func socketDir(log *slog.Logger) string {
	for _, parent := range []string{os.TempDir(), "/tmp"} {
		dir, err := os.MkdirTemp(parent, "mirrord-plugins-")
		if err != nil {
			log.Warn("no directory of its own for the plugins' sockets", "parent", parent, "err", err)
			continue
		}
		if len(dir) <= maxSocketDir {
			return dir
		}
		_ = os.Remove(dir)
		log.Warn("the temporary directory's path is too long for the plugins' unix sockets: they go to /tmp",
			"dir", dir, "max_bytes", maxSocketDir)
	}
	return ""
}

// Run loads the plugins of the directory, then reads it again every
// RescanInterval: new and changed files are loaded, removed ones
// unloaded, and plugins whose process exited restarted. When ctx ends (or
// Close is called) it stops every plugin process and returns nil.
func (h *Host) Run(ctx context.Context) error {
	h.scan()
	t := time.NewTicker(h.cfg.RescanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.Close()
			return nil
		case <-h.closing:
			h.Close()
			return nil
		case <-t.C:
			h.scan()
		}
	}
}

// Close stops every plugin process and returns once they have exited.
// Backends returned earlier then fail with ports.ErrRetryable.
func (h *Host) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.wg.Wait()
		return
	}
	h.closed = true
	for _, e := range h.entries {
		if e.m != nil {
			h.wg.Go(e.m.close)
		}
	}
	h.mu.Unlock()
	close(h.closing)
	h.scanOnce.Do(func() { close(h.scanned) })
	h.wg.Wait()
	if h.sockets != "" {
		if err := os.RemoveAll(h.sockets); err != nil {
			h.log.Warn("remove the plugins' socket directory", "dir", h.sockets, "err", err)
		}
	}
}

// goKill stops inst in the background; Close waits for it. The caller
// holds a managed's lock while it is not closed, or runs under h.wg.
func (h *Host) goKill(inst *instance) {
	h.wg.Go(inst.client.Kill)
}

// For implements ports.Backends. It waits for Run's first scan of the
// directory, within ctx.
func (h *Host) For(ctx context.Context, storageType string) (ports.StorageBackend, error) {
	select {
	case <-h.scanned:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("no plugin serves %s: the plugin host is stopped: %w", storageType, ports.ErrNoBackend)
	}
	if h.dirErr != nil {
		return nil, fmt.Errorf("no plugin serves %s: %v: %w", storageType, h.dirErr, ports.ErrNoBackend)
	}
	var claim []*entry
	for _, e := range h.sortedLocked() {
		if e.m != nil && slices.Contains(e.m.types(), storageType) {
			claim = append(claim, e)
		}
	}
	switch len(claim) {
	case 1:
		return claim[0].m.port, nil
	case 0:
		return nil, fmt.Errorf("no plugin in %s serves %s (%s): %w", h.dir, storageType, h.summaryLocked(), ports.ErrNoBackend)
	}
	names := make([]string, len(claim))
	for i, e := range claim {
		names[i] = e.name()
	}
	return nil, fmt.Errorf("no plugin serves %s: plugins %s in %s all claim it, so none serves it until all but one are removed: %w",
		storageType, strings.Join(names, " and "), h.dir, ports.ErrNoBackend)
}

// summaryLocked lists the loaded plugins with their types and the refused
// ones with why, for the operator reading a no-backend error.
func (h *Host) summaryLocked() string {
	var loaded, refused []string
	for _, e := range h.sortedLocked() {
		if e.m != nil {
			loaded = append(loaded, fmt.Sprintf("%s [%s]", e.name(), strings.Join(e.m.types(), " ")))
		} else {
			refused = append(refused, fmt.Sprintf("%s: %v", e.name(), e.err))
		}
	}
	s := "loaded: none"
	if len(loaded) > 0 {
		s = "loaded: " + strings.Join(loaded, ", ")
	}
	if len(refused) > 0 {
		s += "; refused: " + strings.Join(refused, "; ")
	}
	return s
}

func (h *Host) sortedLocked() []*entry {
	out := make([]*entry, 0, len(h.entries))
	for _, e := range h.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *entry) int { return strings.Compare(a.path, b.path) })
	return out
}

// Plugins reports every file of the plugin directory the host considered,
// sorted by path; a refused directory is one entry, for the directory.
func (h *Host) Plugins() []PluginStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dirErr != nil {
		return []PluginStatus{{Path: h.dir, State: StateRefused, Err: h.dirErr}}
	}
	ents := h.sortedLocked()
	claims := map[string][]string{}
	for _, e := range ents {
		if e.m != nil {
			for _, t := range e.m.types() {
				claims[t] = append(claims[t], e.name())
			}
		}
	}
	out := make([]PluginStatus, 0, len(ents))
	for _, e := range ents {
		if e.m == nil {
			out = append(out, PluginStatus{Path: e.path, State: StateRefused, Err: e.err})
			continue
		}
		st := e.m.status()
		var conflicts []error
		for _, t := range st.Types {
			if others := slices.DeleteFunc(slices.Clone(claims[t]), func(n string) bool { return n == e.name() }); len(others) > 0 {
				conflicts = append(conflicts, fmt.Errorf("storage type %s is also claimed by %s: neither serves it", t, strings.Join(others, ", ")))
			}
		}
		st.Err = errors.Join(append([]error{st.Err}, conflicts...)...)
		out = append(out, st)
	}
	return out
}
