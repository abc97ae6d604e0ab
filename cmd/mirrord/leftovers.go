package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/pluginhost"
	"github.com/cdmdr/mirror/app"
)

// mirrord leftovers: an operator's tool for after a reset, hand-deleted
// keys or a site's loss. With mirrord's own configuration it reads every
// storage and the mirror environments and volumes still recorded from
// etcd, loads the plugins, and asks each storage's plugin what it left
// there that no record accounts for. It changes nothing.

// Exit codes of mirrord leftovers.
const (
	leftoversNone  = 0 // every storage answered, nothing found
	leftoversFound = 1 // leftovers found, every storage answered
	leftoversError = 2 // could not run, or a storage could not be answered
)

// leftoversOptions are the subcommand's own flags.
type leftoversOptions struct {
	output  string
	timeout time.Duration
}

func (o *leftoversOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.output, "o", "table", "output: table, or json for scripts")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long each storage's plugin may take to answer")
}

// runLeftovers is `mirrord leftovers`: it returns the exit code.
func runLeftovers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var opts leftoversOptions
	cfg, err := loadConfigFor("mirrord leftovers", args, getenv, stderr, opts.flags)
	if printedHelp(err, stdout) {
		return leftoversNone
	}
	if err == nil && opts.output != "table" && opts.output != "json" {
		err = fmt.Errorf("-o %q: want table or json", opts.output)
	}
	if err == nil && opts.timeout <= 0 {
		err = fmt.Errorf("-timeout %s: want a positive duration", opts.timeout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mirrord leftovers:", err)
		return leftoversError
	}
	// The operator reads the listing: the daemon's info lines (plugins
	// starting) would bury it.
	level := cfg.LogLevel
	if level == "info" {
		level = "warn"
	}
	log := newLogger(stderr, level, cfg.LogFormat)
	survey, broken, err := surveyLeftovers(ctx, cfg, opts.timeout, log)
	if err != nil {
		fmt.Fprintln(stderr, "mirrord leftovers:", err)
		return leftoversError
	}
	if opts.output == "json" {
		err = writeLeftoversJSON(stdout, survey)
	} else {
		err = writeLeftoversTable(stdout, survey)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mirrord leftovers: write the listing:", err)
		return leftoversError
	}
	for _, s := range survey.Skipped {
		fmt.Fprintf(stderr, "mirrord leftovers: storage %s not asked: %s\n", s.Storage, s.Why)
	}
	for _, u := range survey.Unusable {
		fmt.Fprintf(stderr, "mirrord leftovers: record not usable (what it names may be listed): %s\n", u)
	}
	for _, b := range broken {
		fmt.Fprintf(stderr, "mirrord leftovers: plugin not loaded, the storages of its types were not asked: %s\n", b)
	}
	un := survey.Unanswered()
	for _, s := range un {
		fmt.Fprintf(stderr, "mirrord leftovers: storage %s could not be answered: %v\n", s.Storage, s.Err)
	}
	if len(survey.Storages) == 0 && len(survey.Skipped) > 0 {
		fmt.Fprintf(stderr, "mirrord leftovers: no storage was asked: no plugin of %s serves their types\n", cfg.PluginDir)
		return leftoversError
	}
	if len(un) > 0 || len(broken) > 0 {
		fmt.Fprintf(stderr, "mirrord leftovers: %d storage(s) not answered, %d plugin(s) not loaded; the listing is incomplete\n", len(un), len(broken))
		return leftoversError
	}
	if survey.Found() > 0 {
		return leftoversFound
	}
	return leftoversNone
}

// surveyLeftovers connects to etcd, runs the plugins of the plugin
// directory and asks them. broken lists the plugins that could not be
// loaded: the storages they would have served are among the skipped.
func surveyLeftovers(ctx context.Context, cfg Config, timeout time.Duration, log *slog.Logger) (survey app.LeftoverSurvey, broken []string, err error) {
	if cfg.Embedded != "" {
		// The daemon's in-process etcd, which must be running.
		cfg.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", cfg.EmbeddedEtcdPort)}
	}
	cli, closeEtcd, err := provideEtcdClient(cfg, log)
	if err != nil {
		return survey, nil, err
	}
	defer closeEtcd()

	host := pluginhost.New(pluginhost.Config{Dir: cfg.PluginDir, Plugins: hostSettings(cfg.Plugins), CallTimeout: timeout},
		log.With("component", "plugins"))
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = host.Run(hctx) // it returns nil once stopped
	}()
	defer func() {
		stop()
		<-done
		host.Close()
	}()

	// etcd unreachable shows as a read that does not come back: bound
	// each read as a dial is.
	survey, err = app.SurveyLeftovers(ctx, etcd.NewKV(cli), host, 2*cfg.Etcd.DialTimeout, timeout)
	if err != nil {
		return survey, nil, fmt.Errorf("%w (etcd %s)", err, strings.Join(cfg.Etcd.Endpoints, ","))
	}
	for _, p := range host.Plugins() {
		if p.State != pluginhost.StateRunning {
			broken = append(broken, fmt.Sprintf("%s: %s (%v)", p.Path, p.State, p.Err))
		}
	}
	return survey, broken, nil
}

// writeLeftoversTable prints one row per leftover, or says nothing was
// found and where it looked.
func writeLeftoversTable(w io.Writer, s app.LeftoverSurvey) error {
	var asked []string
	for _, st := range s.Storages {
		if st.Err == nil {
			asked = append(asked, st.Storage)
		}
	}
	if s.Found() == 0 {
		if len(asked) == 0 {
			_, err := fmt.Fprintln(w, "no storage answered")
			return err
		}
		_, err := fmt.Fprintf(w, "nothing found on %s\n", strings.Join(asked, ", "))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORAGE\tKIND\tNAME\tDESCRIPTION\tREMEDY")
	for _, st := range s.Storages {
		for _, l := range st.Leftovers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.Storage, oneLine(l.Kind), oneLine(l.Name), oneLine(l.Description), oneLine(l.Remedy))
		}
	}
	return tw.Flush()
}

// oneLine keeps a cell on its row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// The JSON listing, for scripts.
type (
	leftoversJSON struct {
		Leftovers  []leftoverJSON   `json:"leftovers"`
		Unanswered []unansweredJSON `json:"unanswered"`
		Skipped    []skippedJSON    `json:"skipped"`
		Unusable   []string         `json:"unusable_records"`
	}
	leftoverJSON struct {
		Storage     string `json:"storage"`
		Kind        string `json:"kind"`
		Name        string `json:"name"`
		Description string `json:"description"`
		Remedy      string `json:"remedy"`
	}
	unansweredJSON struct {
		Storage string `json:"storage"`
		Type    string `json:"type"`
		Error   string `json:"error"`
	}
	skippedJSON struct {
		Storage string `json:"storage"`
		Type    string `json:"type,omitempty"`
		Reason  string `json:"reason"`
	}
)

func writeLeftoversJSON(w io.Writer, s app.LeftoverSurvey) error {
	out := leftoversJSON{Leftovers: []leftoverJSON{}, Unanswered: []unansweredJSON{}, Skipped: []skippedJSON{}, Unusable: []string{}}
	for _, st := range s.Storages {
		if st.Err != nil {
			out.Unanswered = append(out.Unanswered, unansweredJSON{Storage: st.Storage, Type: st.Type, Error: st.Err.Error()})
		}
		for _, l := range st.Leftovers {
			out.Leftovers = append(out.Leftovers, leftoverJSON{Storage: st.Storage, Kind: l.Kind, Name: l.Name, Description: l.Description, Remedy: l.Remedy})
		}
	}
	for _, sk := range s.Skipped {
		out.Skipped = append(out.Skipped, skippedJSON{Storage: sk.Storage, Type: sk.Type, Reason: sk.Why})
	}
	out.Unusable = append(out.Unusable, s.Unusable...)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
