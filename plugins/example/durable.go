package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// durable keeps memstorage's environments and volume replications in a
// directory (--state-dir), so that they outlive the plugin process, as a
// real storage outlives the daemon driving it: a daemon killed and
// started again finds the storage as it left it. Every plugin process
// given the same directory shares one storage: each call takes the
// directory's lock, loads the state, runs on a memstorage made from it and
// saves what it changed. Snapshots are not kept: a snapshot's recovery
// point is gone once the call that made it returns.
//
// With --call-log, every call that changes the storage is appended to
// calls.log in the directory, one JSON line (callLine) each, with the
// volume's replication before and after it, read under the same lock: the
// storage's own view of what was done to it, for the crash tests.
type durable struct {
	dir     string
	callLog bool
	opts    []memstorage.Option

	mu sync.Mutex // the calls of this process; the file lock orders processes
}

var _ sdk.Backend = (*durable)(nil)

// savedState is state.json.
type savedState struct {
	// Environments prepared, their storages' metadata left out: it holds
	// secrets, and no call needs it again to rebuild a pairing.
	Environments map[string]sdk.Environment `json:"environments"`
	// Volumes whose storage holds something: a replication, or a copy on
	// the target.
	Volumes map[string]sdk.VolumeReplication `json:"volumes"`
}

// callLine is one line of calls.log.
type callLine struct {
	Time   time.Time `json:"time"`
	PID    int       `json:"pid"`
	Call   string    `json:"call"`
	Env    string    `json:"env,omitempty"`
	Volume string    `json:"volume,omitempty"`
	Before *repState `json:"before,omitempty"`
	After  *repState `json:"after,omitempty"`
	Err    string    `json:"err,omitempty"`
}

// repState is the part of a volume's replication the log records.
type repState struct {
	State        sdk.ReplicationState `json:"state"`
	TargetExists bool                 `json:"target_exists"`
}

func newDurable(dir string, callLog bool, opts ...memstorage.Option) (*durable, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &durable{dir: dir, callLog: callLog, opts: opts}, nil
}

// session is one call on the shared storage: b is made from the saved
// state, which the call may change.
type session struct {
	b     *memstorage.Backend
	state savedState
}

// do runs fn on the storage as saved, under the directory's lock, then
// saves the volumes vols (and the environments fn changed).
func (d *durable) do(ctx context.Context, vols []string, fn func(s *session) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	s, err := d.load(ctx)
	if err != nil {
		return err
	}
	callErr := fn(s)
	for _, id := range vols {
		rep := s.b.Replication(id)
		if rep.State == sdk.ReplicationAbsent && !rep.TargetExists {
			delete(s.state.Volumes, id)
			continue
		}
		s.state.Volumes[id] = sdk.VolumeReplication{State: rep.State, TargetExists: rep.TargetExists,
			LastSyncTime: rep.LastSyncTime, Lag: rep.Lag, Description: rep.Description}
	}
	if err := d.save(s.state); err != nil {
		return errors.Join(callErr, err)
	}
	return callErr
}

// effect runs a call that changes the volume and logs it.
func (d *durable) effect(ctx context.Context, call string, vol sdk.Volume, fn func(b *memstorage.Backend) error) error {
	return d.do(ctx, []string{vol.VolumeUUID}, func(s *session) error {
		before := s.b.Replication(vol.VolumeUUID)
		err := fn(s.b)
		after := s.b.Replication(vol.VolumeUUID)
		d.log(callLine{Call: call, Env: vol.Environment.ID, Volume: vol.VolumeUUID,
			Before: &repState{before.State, before.TargetExists}, After: &repState{after.State, after.TargetExists}}, err)
		return err
	})
}

func (d *durable) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(d.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("state lock: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func (d *durable) load(ctx context.Context) (*session, error) {
	s := &session{b: memstorage.New(d.opts...), state: savedState{
		Environments: map[string]sdk.Environment{}, Volumes: map[string]sdk.VolumeReplication{}}}
	data, err := os.ReadFile(filepath.Join(d.dir, "state.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("load state: %w", err)
	}
	if err := json.Unmarshal(data, &s.state); err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	if s.state.Environments == nil {
		s.state.Environments = map[string]sdk.Environment{}
	}
	if s.state.Volumes == nil {
		s.state.Volumes = map[string]sdk.VolumeReplication{}
	}
	for _, env := range s.state.Environments {
		if err := s.b.PrepareEnvironment(ctx, env); err != nil {
			return nil, fmt.Errorf("load environment %s: %w", env.ID, err)
		}
	}
	for id, rep := range s.state.Volumes {
		s.b.SetReplication(id, rep)
	}
	return s, nil
}

// save replaces state.json whole (a rename), so a process killed while
// saving leaves the previous state.
func (d *durable) save(st savedState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	tmp := filepath.Join(d.dir, "state.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "state.json")); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// log appends l to calls.log if asked for. A line is written whole by one
// write on a file opened O_APPEND, so lines of several processes do not
// mix; a failed write is lost, not fatal (the log is an observer's).
func (d *durable) log(l callLine, err error) {
	if !d.callLog {
		return
	}
	l.Time, l.PID = time.Now().UTC(), os.Getpid()
	if err != nil {
		l.Err = err.Error()
	}
	data, jerr := json.Marshal(l)
	if jerr != nil {
		return
	}
	f, oerr := os.OpenFile(filepath.Join(d.dir, "calls.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if oerr != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(data, '\n'))
}

// Info implements sdk.Backend.
func (d *durable) Info(ctx context.Context) (sdk.Info, error) {
	return memstorage.New(d.opts...).Info(ctx)
}

// PrepareEnvironment implements sdk.Backend.
func (d *durable) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	return d.do(ctx, nil, func(s *session) error {
		err := s.b.PrepareEnvironment(ctx, env)
		if err == nil {
			kept := env
			kept.Source.Metadata, kept.Target.Metadata = nil, nil
			s.state.Environments[env.ID] = kept
		}
		d.log(callLine{Call: "PrepareEnvironment", Env: env.ID}, err)
		return err
	})
}

// EnvironmentStatus implements sdk.Backend.
func (d *durable) EnvironmentStatus(ctx context.Context, env sdk.Environment) (h sdk.EnvironmentHealth, err error) {
	err = d.do(ctx, nil, func(s *session) error {
		h, err = s.b.EnvironmentStatus(ctx, env)
		return err
	})
	return h, err
}

// TeardownEnvironment implements sdk.Backend.
func (d *durable) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (rep sdk.CleanupReport, err error) {
	err = d.do(ctx, nil, func(s *session) error {
		rep, err = s.b.TeardownEnvironment(ctx, env, force)
		if err == nil {
			delete(s.state.Environments, env.ID)
		}
		d.log(callLine{Call: "TeardownEnvironment", Env: env.ID}, err)
		return err
	})
	return rep, err
}

// ReleaseEnvironment implements sdk.Backend.
func (d *durable) ReleaseEnvironment(ctx context.Context, env sdk.Environment) error {
	return memstorage.New(d.opts...).ReleaseEnvironment(ctx, env)
}

// StartVolume implements sdk.Backend.
func (d *durable) StartVolume(ctx context.Context, vol sdk.Volume) error {
	return d.effect(ctx, "StartVolume", vol, func(b *memstorage.Backend) error { return b.StartVolume(ctx, vol) })
}

// VolumeStatus implements sdk.Backend. A copy that completed meanwhile
// is saved completed.
func (d *durable) VolumeStatus(ctx context.Context, vol sdk.Volume) (rep sdk.VolumeReplication, err error) {
	err = d.do(ctx, []string{vol.VolumeUUID}, func(s *session) error {
		rep, err = s.b.VolumeStatus(ctx, vol)
		return err
	})
	return rep, err
}

// VolumeStatuses implements sdk.Backend.
func (d *durable) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) (reps []sdk.VolumeReplication, err error) {
	ids := make([]string, len(vols))
	for i, v := range vols {
		ids[i] = v.VolumeUUID
	}
	err = d.do(ctx, ids, func(s *session) error {
		reps, err = s.b.VolumeStatuses(ctx, env, vols)
		return err
	})
	return reps, err
}

// PauseVolume implements sdk.Backend.
func (d *durable) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	return d.effect(ctx, "PauseVolume", vol, func(b *memstorage.Backend) error { return b.PauseVolume(ctx, vol) })
}

// ResumeVolume implements sdk.Backend.
func (d *durable) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	return d.effect(ctx, "ResumeVolume", vol, func(b *memstorage.Backend) error { return b.ResumeVolume(ctx, vol) })
}

// StopVolume implements sdk.Backend.
func (d *durable) StopVolume(ctx context.Context, vol sdk.Volume) (rep sdk.CleanupReport, err error) {
	err = d.effect(ctx, "StopVolume", vol, func(b *memstorage.Backend) error {
		rep, err = b.StopVolume(ctx, vol)
		return err
	})
	return rep, err
}

// DeleteTarget implements sdk.Backend.
func (d *durable) DeleteTarget(ctx context.Context, vol sdk.Volume) error {
	return d.effect(ctx, "DeleteTarget", vol, func(b *memstorage.Backend) error { return b.DeleteTarget(ctx, vol) })
}

// DestroyVolume implements sdk.Backend.
func (d *durable) DestroyVolume(ctx context.Context, vol sdk.Volume) (rep sdk.CleanupReport, err error) {
	err = d.effect(ctx, "DestroyVolume", vol, func(b *memstorage.Backend) error {
		rep, err = b.DestroyVolume(ctx, vol)
		return err
	})
	return rep, err
}

// AddSnapshot implements sdk.Backend.
func (d *durable) AddSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	return d.effect(ctx, "AddSnapshot", snap.Volume, func(b *memstorage.Backend) error { return b.AddSnapshot(ctx, snap) })
}

// RemoveSnapshot implements sdk.Backend.
func (d *durable) RemoveSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	return d.effect(ctx, "RemoveSnapshot", snap.Volume, func(b *memstorage.Backend) error { return b.RemoveSnapshot(ctx, snap) })
}

// SnapshotStatus implements sdk.Backend.
func (d *durable) SnapshotStatus(ctx context.Context, snap sdk.Snapshot) (rep sdk.SnapshotReplication, err error) {
	err = d.do(ctx, nil, func(s *session) error {
		rep, err = s.b.SnapshotStatus(ctx, snap)
		return err
	})
	return rep, err
}

// FindLeftovers implements sdk.Backend.
func (d *durable) FindLeftovers(ctx context.Context, q sdk.LeftoverQuery) (los []sdk.Leftover, err error) {
	err = d.do(ctx, nil, func(s *session) error {
		los, err = s.b.FindLeftovers(ctx, q)
		return err
	})
	return los, err
}
