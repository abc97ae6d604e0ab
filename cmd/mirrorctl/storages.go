package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/pluginhost"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/cmd/internal/config"
)

// doctor --storages: what the plugins left on the storages, asked as
// `mirrord leftovers` asks (app.SurveyLeftovers over the plugins of the
// configured plugin directory), as findings.
const (
	checkStorageLeftover   = "storage-leftover"
	checkStorageUnanswered = "storage-not-answered"
	checkStorageSkipped    = "storage-not-asked"
	checkPluginBroken      = "plugin-not-loaded"
)

// surveyStorages runs the plugins and asks them; log takes their lines
// (warnings and worse).
func (s *store) surveyStorages(ctx context.Context, cfg config.Config, timeout time.Duration, log *slog.Logger) ([]Finding, error) {
	settings := make(map[string]pluginhost.Settings, len(cfg.Plugins))
	for name, p := range cfg.Plugins {
		settings[name] = pluginhost.Settings{Args: p.Args, Env: p.Env}
	}
	host := pluginhost.New(pluginhost.Config{Dir: cfg.PluginDir, Plugins: settings, CallTimeout: timeout}, log)
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = host.Run(hctx) // nil once stopped
	}()
	defer func() {
		stop()
		<-done
		host.Close()
	}()
	survey, err := app.SurveyLeftovers(ctx, etcd.NewKV(s.cli), host, 2*s.timeout, timeout)
	if err != nil {
		return nil, s.explain(err)
	}
	var out []Finding
	for _, st := range survey.Storages {
		if st.Err != nil {
			out = append(out, Finding{Check: checkStorageUnanswered, Key: st.Storage,
				What: fmt.Sprintf("the %s plugin could not answer: %v", st.Type, st.Err),
				Fix:  "check that the storage is reachable from this host, then run doctor --storages again"})
		}
		for _, l := range st.Leftovers {
			out = append(out, Finding{Check: checkStorageLeftover, Key: st.Storage,
				What: fmt.Sprintf("%s %s: %s", l.Kind, l.Name, l.Description), Fix: l.Remedy})
		}
	}
	for _, sk := range survey.Skipped {
		out = append(out, Finding{Check: checkStorageSkipped, Key: sk.Storage,
			What: sk.Why, Fix: "install the plugin of type " + sk.Type + " in " + cfg.PluginDir + " (--plugin-dir) to ask it"})
	}
	for _, p := range host.Plugins() {
		if p.State != pluginhost.StateRunning {
			out = append(out, Finding{Check: checkPluginBroken, Key: p.Path,
				What: fmt.Sprintf("the plugin is %s: %v; the storages of its types were not asked", p.State, p.Err),
				Fix:  "see mirrord's log for the plugin; fix or remove it"})
		}
	}
	return out, nil
}
