package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cdmdr/mirror/core"
)

// getOptions are get's flags.
type getOptions struct {
	output string
	watch  bool
}

func (o *getOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.output, "o", "table", "output: table, wide (with the reason's words), json or yaml")
	fs.BoolVar(&o.watch, "watch", false, "refresh live as etcd changes (Ctrl-C ends)")
}

// kinds get knows, by the words an operator may type.
var getKinds = map[string]string{
	"environments": "environments", "environment": "environments", "env": "environments", "envs": "environments",
	"volumes": "volumes", "volume": "volumes", "vol": "volumes", "vols": "volumes",
	"snapshots": "snapshots", "snapshot": "snapshots", "snap": "snapshots", "snaps": "snapshots",
}

// runGet is `mirrorctl get KIND [NAME...]`.
func (e *env) runGet(ctx context.Context, args []string) int {
	var o getOptions
	cfg, rest, err := e.load("get", args, o.flags)
	if err == nil {
		switch {
		case len(rest) == 0:
			err = usageError{fmt.Errorf("what: environments, volumes or snapshots")}
		case getKinds[rest[0]] == "":
			err = usageError{fmt.Errorf("%q: want environments, volumes or snapshots", rest[0])}
		case o.output != "table" && o.output != "wide" && o.output != "json" && o.output != "yaml":
			err = usageError{fmt.Errorf("-o %q: want table, wide, json or yaml", o.output)}
		}
	}
	var filter []core.ParsedKey
	if err == nil {
		for _, n := range rest[1:] {
			p, perr := parseName(n)
			if perr != nil {
				err = perr
				break
			}
			filter = append(filter, p)
		}
	}
	if err != nil {
		return e.exitFor("get", err)
	}
	s, closeStore, err := connect(ctx, cfg)
	if err != nil {
		return e.exitFor("get", err)
	}
	defer closeStore()
	kind := getKinds[rest[0]]
	show := func(k keys) error {
		return e.render(kind, o, s.build(k).filter(filter))
	}
	if o.watch {
		return e.exitFor("get", e.watch(ctx, s, show))
	}
	k, err := s.read(ctx, s.mirrorPrefixes()...)
	if err == nil {
		err = show(k)
	}
	return e.exitFor("get", err)
}

// filter keeps what the names ask for: an environment name keeps that
// environment and everything of it; a volume name that volume and its
// snapshots.
func (v view) filter(names []core.ParsedKey) view {
	if len(names) == 0 {
		return v
	}
	match := func(name string) bool {
		for _, p := range names {
			var want string
			switch p.Kind {
			case core.KindEnvironment:
				want = p.Env.String()
			case core.KindVolume:
				want = volumeName(p.Volume)
			case core.KindSnapshot:
				want = strings.TrimPrefix(core.SnapshotKey(p.Snapshot), core.VolumePrefix)
			}
			if name == want || strings.HasPrefix(name, want+"/") {
				return true
			}
		}
		return false
	}
	var out view
	for _, x := range v.Environments {
		if match(x.Name) {
			out.Environments = append(out.Environments, x)
		}
	}
	for _, x := range v.Volumes {
		if match(x.Name) {
			out.Volumes = append(out.Volumes, x)
		}
	}
	for _, x := range v.Snapshots {
		if match(x.Name) {
			out.Snapshots = append(out.Snapshots, x)
		}
	}
	return out
}

// render writes one listing of kind.
func (e *env) render(kind string, o getOptions, v view) error {
	var items any
	switch kind {
	case "environments":
		items = nonNil(v.Environments)
	case "volumes":
		items = nonNil(v.Volumes)
	default:
		items = nonNil(v.Snapshots)
	}
	switch o.output {
	case "json":
		data, err := json.MarshalIndent(items, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", data)
		return err
	case "yaml":
		return writeYAML(e.stdout, items)
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	wide := o.output == "wide"
	now := e.now()
	switch kind {
	case "environments":
		fmt.Fprintln(tw, header(wide, "NAME\tSOURCE\tTARGET\tOPERATION\tSTATE\tREASON\tVOLUMES\tLEADER\tAGE"))
		for _, x := range v.Environments {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s%s\n", x.Name, storageName(x.Source), storageName(x.Target),
				operation(x.Operation, x.Force), state(x.Status), reason(x.Status, x.Problem), x.Volumes,
				dash(x.Leader), age(x.Status, now), words(wide, x.Status, x.Problem))
		}
	case "volumes":
		fmt.Fprintln(tw, header(wide, "NAME\tOPERATION\tSTATE\tPROGRESS\tLAST SYNC\tLAG\tREASON\tLEADER\tAGE"))
		for _, x := range v.Volumes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", x.Name, dash(x.Operation), state(x.Status),
				progress(x.Status, o.watch), lastSync(x.Status, now), lag(x.Status), reason(x.Status, x.Problem),
				dash(x.Leader), age(x.Status, now), words(wide, x.Status, x.Problem))
		}
	default:
		fmt.Fprintln(tw, header(wide, "NAME\tSNAPSHOT\tDELETED\tSTATE\tREASON\tAGE"))
		for _, x := range v.Snapshots {
			fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%s%s\n", x.Name, dash(x.SnapshotName), x.Deleted, state(x.Status),
				reason(x.Status, x.Problem), age(x.Status, now), words(wide, x.Status, x.Problem))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := e.stdout.Write(b.Bytes())
	return err
}

// nonNil makes an empty listing [] in JSON, not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeYAML writes v as YAML with the JSON field names (the contract's).
func writeYAML(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return err
	}
	return enc.Close()
}

func header(wide bool, h string) string {
	if wide {
		return h + "\tDETAIL"
	}
	return h
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func storageName(r *core.StorageRef) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", r.ClusterID, r.StorageID)
}

func operation(op string, force bool) string {
	if force {
		return op + " (force)"
	}
	return dash(op)
}

func state(st *core.Status) string {
	if st == nil {
		return "-"
	}
	return string(st.StateCode)
}

// reason is the reason's code without its constant head
// (cdm-dr.mirror.volume.), or what keeps mirrorctl from reading it.
func reason(st *core.Status, problem string) string {
	switch {
	case problem != "":
		return "(" + strings.SplitN(problem, ":", 2)[0] + ")"
	case st == nil || st.ErrorReason == nil:
		return "-"
	}
	code := st.ErrorReason.Code
	if i := strings.LastIndex(code, "."); i >= 0 && strings.HasPrefix(code, "cdm-dr.mirror.") {
		return code[i+1:]
	}
	return code
}

func words(wide bool, st *core.Status, problem string) string {
	if !wide {
		return ""
	}
	switch {
	case problem != "":
		return "\t" + problem
	case st != nil && st.ErrorReason != nil:
		return "\t" + st.ErrorReason.Contents
	}
	return "\t-"
}

// progress is the first copy's progress; while watching, a bar.
func progress(st *core.Status, bar bool) string {
	if st == nil || st.Progress == nil {
		return "-"
	}
	p := min(max(*st.Progress, 0), 100)
	if !bar {
		return strconv.Itoa(p) + "%"
	}
	const width = 20
	n := p * width / 100
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] " + strconv.Itoa(p) + "%"
}

func lastSync(st *core.Status, now time.Time) string {
	if st == nil || st.LastSyncTime == nil {
		return "-"
	}
	return since(*st.LastSyncTime, now) + " ago"
}

func lag(st *core.Status) string {
	if st == nil || st.Lag == "" {
		return "-"
	}
	return st.Lag
}

// age is how long ago the status was written.
func age(st *core.Status, now time.Time) string {
	if st == nil || st.UpdatedAt == nil {
		return "-"
	}
	return since(*st.UpdatedAt, now)
}

// since says a duration as kubectl's AGE does: 45s, 12m, 3h, 5d.
func since(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < 2*time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// watch shows the listing, then again after every change (gathered for
// a moment, so a burst of writes is one refresh), until ctx ends. On a
// terminal each listing replaces the last.
func (e *env) watch(ctx context.Context, s *store, show func(keys) error) error {
	clear := isTerminal(e.stdout)
	for {
		k, err := s.read(ctx, s.mirrorPrefixes()...)
		if err != nil {
			return err
		}
		if clear {
			fmt.Fprint(e.stdout, "\033[H\033[2J")
		}
		fmt.Fprintf(e.stdout, "# %s (etcd revision %d)\n", e.now().UTC().Format(time.RFC3339), k.rev)
		if err := show(k); err != nil {
			return err
		}
		if err := s.waitChange(ctx, k.rev); err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C: a watch ends well
			}
			return err
		}
	}
}

// waitChange returns once a mirror key changed after rev (and a short
// quiet moment passed), or ctx ends.
func (s *store) waitChange(ctx context.Context, rev int64) error {
	if err := s.firstChange(ctx, rev, true, s.mirrorPrefixes()...); err != nil {
		return err
	}
	select { // let a burst land
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
