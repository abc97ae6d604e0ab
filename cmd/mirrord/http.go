package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/metrics"
	"github.com/cdmdr/mirror/adapters/pluginhost"
	"github.com/cdmdr/mirror/app"
)

// checkTimeout bounds one readiness check: a scraper or a load balancer
// asking /readyz must get an answer even with etcd gone.
const checkTimeout = 2 * time.Second

// httpServer serves mirrord's operator endpoints on Config.HTTPAddress:
// /metrics (Prometheus), /healthz (alive) and /readyz (ready to work).
type httpServer struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Addr is the address listened on ("" when not serving).
func (s *httpServer) Addr() string {
	if s == nil {
		return ""
	}
	return s.addr
}

// check is one readiness condition: nil when met, else why not.
type check struct {
	name string
	fn   func(ctx context.Context) error
}

// pluginView is what the endpoints read of the plugin host; nil when the
// backends are not plugins (integration tests with a scripted backend).
type pluginView interface {
	Plugins() []pluginhost.PluginStatus
}

func providePluginView(h *pluginhost.Host) pluginView { return h }

func noPluginView() pluginView { return nil }

// provideHTTP starts serving the endpoints, unless c.HTTPAddress is empty;
// its cleanup stops the server and waits for it.
func provideHTTP(c Config, log *slog.Logger, m *metrics.Metrics, eng *app.Engine, cl *clientv3.Client,
	el *etcd.Election, pv pluginView) (*httpServer, func(), error) {
	if c.HTTPAddress == "" {
		return nil, func() {}, nil
	}
	src := metrics.Sources{Overview: eng.Overview, SessionHeld: func() bool { return sessionHeld(el) }}
	checks := []check{
		{"etcd", func(ctx context.Context) error { return etcdReachable(ctx, cl, c.Etcd.LeaderPrefix) }},
		{"session", func(context.Context) error {
			if !sessionHeld(el) {
				return errors.New("no election session held: this daemon leads nothing")
			}
			return nil
		}},
	}
	if pv != nil {
		src.PluginRestarts = func() map[string]int { return pluginRestarts(pv) }
		checks = append(checks, check{"plugins", func(context.Context) error { return pluginsLoaded(pv) }})
	}
	m.Watch(src)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /readyz", readyHandler(checks))

	ln, err := net.Listen("tcp", c.HTTPAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("http endpoints on %s: %w", c.HTTPAddress, err)
	}
	s := &httpServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		addr: ln.Addr().String(), done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http endpoints stopped", "addr", s.addr, "err", err)
		}
	}()
	log.Info("http endpoints serving", "addr", s.addr, "paths", "/metrics /healthz /readyz")
	return s, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		<-s.done
	}, nil
}

// readyHandler answers 200 when every check passes, else 503 with one
// line per failing check: "name: why".
func readyHandler(checks []check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
		defer cancel()
		var failed []string
		for _, c := range checks {
			if err := c.fn(ctx); err != nil {
				failed = append(failed, c.name+": "+err.Error())
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(failed, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// etcdReachable reads one key's count: it needs the cluster's quorum, as
// every write of the daemon does.
func etcdReachable(ctx context.Context, cl *clientv3.Client, key string) error {
	if _, err := cl.Get(ctx, key, clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("unreachable: %w", err)
	}
	return nil
}

// sessionHeld says whether the election's session is alive: without it
// the daemon's leader keys are gone and it may write nothing.
func sessionHeld(el *etcd.Election) bool { return el.Lease() != clientv3.NoLease }

// pluginsLoaded is nil when at least one plugin process runs.
func pluginsLoaded(pv pluginView) error {
	var not []string
	for _, p := range pv.Plugins() {
		if p.State == pluginhost.StateRunning {
			return nil
		}
		why := string(p.State)
		if p.Err != nil {
			why += ": " + p.Err.Error()
		}
		not = append(not, p.Path+" ("+why+")")
	}
	if len(not) == 0 {
		return errors.New("no plugin loaded yet")
	}
	return fmt.Errorf("none running: %s", strings.Join(not, "; "))
}

// pluginRestarts counts restarts by plugin file.
func pluginRestarts(pv pluginView) map[string]int {
	out := map[string]int{}
	for _, p := range pv.Plugins() {
		if p.State != pluginhost.StateRefused {
			out[filepath.Base(p.Path)] += p.Restarts
		}
	}
	return out
}
