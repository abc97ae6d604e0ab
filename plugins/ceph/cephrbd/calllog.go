package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Call log (--call-log FILE): an observer's record of every call that
// changes the storage, for the crash tests (docs/reliability/ceph.md). Each
// such call writes two JSON lines (callLine): "attempted" BEFORE the call
// reaches the backend, with the volume's replication as VolumeStatus read
// it just before, and "done" after it, with its error. The attempted line
// is written by one write(2) on a file opened O_APPEND, then fsynced,
// before the call starts: a plugin killed (SIGKILL) at any moment of the
// call leaves the line of every call it acted upon, and a host crash too
// once fsync returned. A kill between the two lines leaves an attempted
// line without its done line (an interrupted call). The lines have the
// example plugin's fields (pid, call, volume, before, err), so the crash
// tests count duplicated side effects from both logs the same way.
//
// It costs one VolumeStatus per volume call (at most callLogStatusTimeout):
// a test instrument, off by default.

// callLogStatusTimeout bounds the status read before a call: a cluster
// that does not answer delays the call that much at most, and the line
// then says why the state is unknown.
const callLogStatusTimeout = 15 * time.Second

// callLine is one line of the call log.
type callLine struct {
	Time  time.Time `json:"time"`
	PID   int       `json:"pid"`
	Call  string    `json:"call"`
	Phase string    `json:"phase"` // "attempted" (before the call) or "done"
	Env   string    `json:"env,omitempty"`
	// Volume is the volume's UUID (its image is volume-<uuid>).
	Volume string `json:"volume,omitempty"`
	// Before is the volume's replication read just before the call; nil
	// when the read failed (BeforeErr says why) or the call is not a
	// volume's start, pause, resume, stop, target deletion or destroy.
	Before    *callState `json:"before,omitempty"`
	BeforeErr string     `json:"before_err,omitempty"`
	Err       string     `json:"err,omitempty"`
	Took      string     `json:"took,omitempty"`
}

// callState is the part of a volume's replication a line records.
type callState struct {
	State        sdk.ReplicationState `json:"state"`
	TargetExists bool                 `json:"target_exists"`
}

// callLogged is a backend whose calls that change the storage are
// logged; the others pass through.
type callLogged struct {
	sdk.Backend
	log *slog.Logger

	mu sync.Mutex // one line at a time from this process
	f  *os.File
}

var _ sdk.Backend = (*callLogged)(nil)

// withCallLog wraps b so that its calls that change the storage are
// appended to the file at path (created 0600 if absent).
func withCallLog(b sdk.Backend, log *slog.Logger, path string) (*callLogged, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the call log: %w", err)
	}
	return &callLogged{Backend: b, log: log, f: f}, nil
}

// write appends l as one line and fsyncs it. A line that cannot be
// written is reported in the plugin's log, and the call goes on: the log
// observes the storage, it does not guard it.
func (c *callLogged) write(l callLine) {
	l.Time, l.PID = time.Now().UTC(), os.Getpid()
	data, err := json.Marshal(l)
	if err == nil {
		c.mu.Lock()
		_, err = c.f.Write(append(data, '\n'))
		if err == nil {
			err = c.f.Sync()
		}
		c.mu.Unlock()
	}
	if err != nil {
		c.log.Error("cannot write the call log", "call", l.Call, "phase", l.Phase, "error", err)
	}
}

// before reads the volume's replication for an attempted line.
func (c *callLogged) before(ctx context.Context, vol sdk.Volume, l *callLine) {
	ctx, cancel := context.WithTimeout(ctx, callLogStatusTimeout)
	defer cancel()
	rep, err := c.Backend.VolumeStatus(ctx, vol)
	if err != nil {
		l.BeforeErr = err.Error()
		return
	}
	l.Before = &callState{State: rep.State, TargetExists: rep.TargetExists}
}

// logged runs fn between an attempted line and a done line. withState
// reads the volume's replication for the attempted line.
func (c *callLogged) logged(ctx context.Context, call string, env string, vol *sdk.Volume, withState bool, fn func() error) error {
	l := callLine{Call: call, Phase: "attempted", Env: env}
	if vol != nil {
		l.Env, l.Volume = vol.Environment.ID, vol.VolumeUUID
		if withState {
			c.before(ctx, *vol, &l)
		}
	}
	c.write(l)
	began := time.Now()
	err := fn()
	done := callLine{Call: call, Phase: "done", Env: l.Env, Volume: l.Volume, Took: time.Since(began).Round(time.Millisecond).String()}
	if err != nil {
		done.Err = err.Error()
	}
	c.write(done)
	return err
}

// PrepareEnvironment implements sdk.Backend.
func (c *callLogged) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	return c.logged(ctx, "PrepareEnvironment", env.ID, nil, false, func() error { return c.Backend.PrepareEnvironment(ctx, env) })
}

// TeardownEnvironment implements sdk.Backend.
func (c *callLogged) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (rep sdk.CleanupReport, err error) {
	err = c.logged(ctx, "TeardownEnvironment", env.ID, nil, false, func() error {
		rep, err = c.Backend.TeardownEnvironment(ctx, env, force)
		return err
	})
	return rep, err
}

// ReleaseEnvironment implements sdk.Backend.
func (c *callLogged) ReleaseEnvironment(ctx context.Context, env sdk.Environment) error {
	return c.logged(ctx, "ReleaseEnvironment", env.ID, nil, false, func() error { return c.Backend.ReleaseEnvironment(ctx, env) })
}

// StartVolume implements sdk.Backend.
func (c *callLogged) StartVolume(ctx context.Context, vol sdk.Volume) error {
	return c.logged(ctx, "StartVolume", "", &vol, true, func() error { return c.Backend.StartVolume(ctx, vol) })
}

// PauseVolume implements sdk.Backend.
func (c *callLogged) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	return c.logged(ctx, "PauseVolume", "", &vol, true, func() error { return c.Backend.PauseVolume(ctx, vol) })
}

// ResumeVolume implements sdk.Backend.
func (c *callLogged) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	return c.logged(ctx, "ResumeVolume", "", &vol, true, func() error { return c.Backend.ResumeVolume(ctx, vol) })
}

// StopVolume implements sdk.Backend.
func (c *callLogged) StopVolume(ctx context.Context, vol sdk.Volume) (rep sdk.CleanupReport, err error) {
	err = c.logged(ctx, "StopVolume", "", &vol, true, func() error {
		rep, err = c.Backend.StopVolume(ctx, vol)
		return err
	})
	return rep, err
}

// DeleteTarget implements sdk.Backend.
func (c *callLogged) DeleteTarget(ctx context.Context, vol sdk.Volume) error {
	return c.logged(ctx, "DeleteTarget", "", &vol, true, func() error { return c.Backend.DeleteTarget(ctx, vol) })
}

// DestroyVolume implements sdk.Backend.
func (c *callLogged) DestroyVolume(ctx context.Context, vol sdk.Volume) (rep sdk.CleanupReport, err error) {
	err = c.logged(ctx, "DestroyVolume", "", &vol, true, func() error {
		rep, err = c.Backend.DestroyVolume(ctx, vol)
		return err
	})
	return rep, err
}

// AddSnapshot implements sdk.Backend.
func (c *callLogged) AddSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	return c.logged(ctx, "AddSnapshot", "", &snap.Volume, false, func() error { return c.Backend.AddSnapshot(ctx, snap) })
}

// RemoveSnapshot implements sdk.Backend.
func (c *callLogged) RemoveSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	return c.logged(ctx, "RemoveSnapshot", "", &snap.Volume, false, func() error { return c.Backend.RemoveSnapshot(ctx, snap) })
}
