// Package nfsfile is the storage plugin for file volumes
// (openstack.storage.type.nfs: Cinder's NFS driver keeps each volume as a
// file volume-{uuid} on a share). The source is read through an agent
// next to the source storage (package agent), which serves block sums and
// changed blocks; the plugin copies each volume into the target storage's
// directory by delta sync (package deltasync) on an interval, the RPO.
//
// What another host's plugin must know lives in the target directory
// (records.go); the sync loops are host-bound work, so volumes follow
// their environment's leader (Capabilities.VolumesFollowEnvironment) and
// ReleaseEnvironment stops the loops on this host.
package nfsfile

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

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/sdk"
)

// StorageType is the storage type the plugin serves.
const StorageType = "openstack.storage.type.nfs"

// Version is the plugin's version.
const Version = "0.1.0"

// defaultProbeTimeout bounds a check that the source volume exists, so
// that a destroy or a stop never waits long for a lost site.
const defaultProbeTimeout = 10 * time.Second

// Options configure a Backend.
type Options struct {
	// Logger receives the plugin's log; nil discards it.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// ProbeTimeout bounds a check that a source volume exists (a stop or
	// destroy with the source site lost waits this long); zero is 10 s.
	ProbeTimeout time.Duration
}

// Backend is the nfs plugin's sdk.Backend.
type Backend struct {
	log   *slog.Logger
	now   func() time.Time
	probe time.Duration

	mu      sync.Mutex
	runners map[string]*runner // by volume UUID: the sync loops on this host
	// hosted are the environments this host prepared and has not
	// released: only their volumes' loops run here. A volume call never
	// starts a loop for another (during a hand-over, the old host would
	// start again what it just released).
	hosted map[string]bool
	// ending counts, by volume UUID, the stops and deletes under way:
	// their loop must not be started again meanwhile (endRunner).
	ending map[string]int
}

var _ sdk.Backend = (*Backend)(nil)

// New returns the backend.
func New(o Options) *Backend {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = defaultProbeTimeout
	}
	return &Backend{log: o.Logger, now: o.Now, probe: o.ProbeTimeout, runners: map[string]*runner{}, hosted: map[string]bool{}, ending: map[string]int{}}
}

// Close stops every sync loop on this host.
func (b *Backend) Close() {
	b.mu.Lock()
	rs := make([]*runner, 0, len(b.runners))
	for _, r := range b.runners {
		rs = append(rs, r)
	}
	b.mu.Unlock()
	for _, r := range rs {
		b.stopRunner(r.vol.VolumeUUID)
	}
}

// Info implements sdk.Backend.
func (b *Backend) Info(ctx context.Context) (sdk.Info, error) {
	if err := ctx.Err(); err != nil {
		return sdk.Info{}, err
	}
	return sdk.Info{
		Name:         "nfs-file",
		Version:      Version,
		StorageTypes: []string{StorageType},
		Capabilities: sdk.Capabilities{Pause: true, KeepTargetStop: true, Snapshots: true, VolumesFollowEnvironment: true,
			PairingOnTargetOnly: true},
	}, nil
}

// PrepareEnvironment implements sdk.Backend: the target directory gets
// the state directory and the environment's record, and this host starts
// the sync loops of the environment's replicated volumes (after a
// takeover, the earlier host's).
func (b *Backend) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tgt, err := parseTarget(env.Target)
	if err != nil {
		return fmt.Errorf("prepare environment %s: %w", env.ID, err)
	}
	if err := checkDir(tgt.dir); err != nil {
		return fmt.Errorf("prepare environment %s: target storage %s: %w", env.ID, storageName(env.Target), err)
	}
	rec := struct {
		Source string    `json:"source"`
		Target string    `json:"target"`
		Since  time.Time `json:"since"`
	}{storageName(env.Source), storageName(env.Target), b.now().UTC()}
	if ok, _ := exists(environmentPath(tgt.dir, env.ID)); !ok {
		if err := writeJSON(environmentPath(tgt.dir, env.ID), rec); err != nil {
			return fmt.Errorf("prepare environment %s: record it in %s: %w", env.ID, tgt.dir, err)
		}
	}
	vols, err := replicated(tgt.dir, env.ID)
	if err != nil {
		return fmt.Errorf("prepare environment %s: %w", env.ID, err)
	}
	b.mu.Lock()
	b.hosted[env.ID] = true
	b.mu.Unlock()
	for _, rv := range vols {
		if rv.rec.Paused && !rv.rec.Stopping {
			continue
		}
		b.ensureRunner(env, rv.uuid, rv.rec.VolumeID, rv.agent())
	}
	return nil
}

// EnvironmentStatus implements sdk.Backend: ready when the target
// directory holds the environment's record and this host runs the sync
// loop of each of its volumes that syncs.
func (b *Backend) EnvironmentStatus(ctx context.Context, env sdk.Environment) (sdk.EnvironmentHealth, error) {
	if err := ctx.Err(); err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	tgt, err := parseTarget(env.Target)
	if err != nil {
		return sdk.EnvironmentHealth{Description: err.Error()}, nil
	}
	if err := checkDir(tgt.dir); err != nil {
		return sdk.EnvironmentHealth{Description: fmt.Sprintf("target directory: %v", err)}, nil
	}
	if ok, err := exists(environmentPath(tgt.dir, env.ID)); err != nil || !ok {
		return sdk.EnvironmentHealth{Description: "the environment is not prepared in " + tgt.dir}, nil
	}
	vols, err := replicated(tgt.dir, env.ID)
	if err != nil {
		return sdk.EnvironmentHealth{}, fmt.Errorf("environment %s: %w", env.ID, err)
	}
	var idle []string
	for _, rv := range vols {
		if (!rv.rec.Paused || rv.rec.Stopping) && !b.running(rv.uuid) {
			idle = append(idle, volumeName(rv.uuid))
		}
	}
	if len(idle) > 0 {
		return sdk.EnvironmentHealth{Description: fmt.Sprintf("%d volume(s) are not synced from this host: %s", len(idle), strings.Join(first(idle, 5), ", "))}, nil
	}
	return sdk.EnvironmentHealth{Ready: true}, nil
}

// TeardownEnvironment implements sdk.Backend.
func (b *Backend) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (sdk.CleanupReport, error) {
	if err := ctx.Err(); err != nil {
		return sdk.CleanupReport{}, err
	}
	tgt, err := parseTarget(env.Target)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("teardown environment %s: %w", env.ID, err)
	}
	vols, err := replicated(tgt.dir, env.ID)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("teardown environment %s: %w", env.ID, err)
	}
	var rep sdk.CleanupReport
	if len(vols) > 0 {
		var names []string
		for _, rv := range vols {
			names = append(names, volumeName(rv.uuid))
		}
		if !force {
			return rep, fmt.Errorf("teardown environment %s: %d volume(s) still replicate into %s: %s: %w",
				env.ID, len(vols), tgt.dir, strings.Join(first(names, 5), ", "), sdk.ErrPrecondition)
		}
		for _, rv := range vols {
			b.stopRunner(rv.uuid)
			rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("volume %s still set up to replicate into %s (its sync loop is stopped; its copy and state are kept: stop, delete or destroy it)",
				volumeName(rv.uuid), tgt.dir))
		}
	}
	if err := removeDurably(environmentPath(tgt.dir, env.ID)); err != nil {
		return rep, fmt.Errorf("teardown environment %s: %w", env.ID, err)
	}
	b.mu.Lock()
	delete(b.hosted, env.ID)
	b.mu.Unlock()
	return rep, nil
}

// ReleaseEnvironment implements sdk.Backend: this host stops syncing the
// environment's volumes; their records stay for the next leader.
func (b *Backend) ReleaseEnvironment(ctx context.Context, env sdk.Environment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.hosted, env.ID)
	var uuids []string
	for uuid, r := range b.runners {
		if r.vol.Environment.ID == env.ID {
			uuids = append(uuids, uuid)
		}
	}
	b.mu.Unlock()
	for _, uuid := range uuids {
		b.stopRunner(uuid)
	}
	return nil
}

// VolumeStatuses implements sdk.Backend, one volume at a time: each
// status is a few small file reads.
func (b *Backend) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	return sdk.VolumeStatusesOneByOne(ctx, b, env, vols)
}

// replicatedVolume is a volume's replication record found in a target
// directory.
type replicatedVolume struct {
	uuid string
	rec  replication
}

func (rv replicatedVolume) agent() sdk.Agent {
	host, port, _ := splitAgent(rv.rec.Agent)
	return sdk.Agent{IP: host, Port: port}
}

// replicated lists the volumes of env replicating into dir.
func replicated(dir, env string) ([]replicatedVolume, error) {
	entries, err := os.ReadDir(filepath.Join(dir, stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []replicatedVolume
	for _, e := range entries {
		uuid, ok := strings.CutPrefix(e.Name(), "volume-")
		if !ok || !e.IsDir() {
			continue
		}
		var rec replication
		found, err := readJSON(replicationPath(dir, uuid), &rec)
		if err != nil {
			return nil, err
		}
		if found && rec.Environment == env {
			out = append(out, replicatedVolume{uuid, rec})
		}
	}
	slices.SortFunc(out, func(a, b replicatedVolume) int { return strings.Compare(a.uuid, b.uuid) })
	return out, nil
}

// checkDir checks that dir is a directory this host can write.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o700); err != nil {
		return fmt.Errorf("%s is not writable here: %w", dir, err)
	}
	return nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// sourceClient is the agent client for vol.
func sourceClient(vol sdk.Volume) (*agentproto.Client, error) {
	cfg, err := agentConfig(vol.Environment.Source, vol.SourceAgent)
	if err != nil {
		return nil, err
	}
	return agentproto.NewClient(cfg)
}
