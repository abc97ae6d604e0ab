package cephrbd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// fakeStorage is a backend of one volume whose calls look at the call log
// while they run: the attempted line must be there already.
type fakeStorage struct {
	sdk.Backend // nil: a call not overridden panics
	t           *testing.T
	path        string
	state       sdk.ReplicationState
	statusErr   error
	calls       []string
}

func (f *fakeStorage) VolumeStatus(context.Context, sdk.Volume) (sdk.VolumeReplication, error) {
	if f.statusErr != nil {
		return sdk.VolumeReplication{}, f.statusErr
	}
	return sdk.VolumeReplication{State: f.state, TargetExists: f.state != sdk.ReplicationAbsent}, nil
}

// acted checks that the log's last line is the call's attempted line,
// then changes the storage.
func (f *fakeStorage) acted(call string, to sdk.ReplicationState) {
	lines := readCallLines(f.t, f.path)
	if len(lines) == 0 || lines[len(lines)-1].Call != call || lines[len(lines)-1].Phase != "attempted" {
		f.t.Errorf("%s ran before its attempted line was in the log: %+v", call, lines)
	}
	f.calls = append(f.calls, call)
	f.state = to
}

func (f *fakeStorage) StartVolume(context.Context, sdk.Volume) error {
	f.acted("StartVolume", sdk.ReplicationSyncing)
	return nil
}

func (f *fakeStorage) PauseVolume(context.Context, sdk.Volume) error {
	f.acted("PauseVolume", sdk.ReplicationPaused)
	return nil
}

func (f *fakeStorage) DestroyVolume(context.Context, sdk.Volume) (sdk.CleanupReport, error) {
	f.acted("DestroyVolume", f.state)
	return sdk.CleanupReport{}, errors.New("source unreachable")
}

func (f *fakeStorage) PrepareEnvironment(context.Context, sdk.Environment) error {
	f.acted("PrepareEnvironment", f.state)
	return nil
}

func readCallLines(t *testing.T, path string) []callLine {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("the call log: %v", err)
	}
	defer file.Close()
	var lines []callLine
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var l callLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("call log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// Each call that changes the storage writes its attempted line, with the
// volume's state read before it, before it reaches the backend, then its
// done line with the error; a status that cannot be read is said so; the
// calls that change nothing are not logged; the file is 0600 and appended
// to by a plugin started again.
func TestCallLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calls.log")
	fake := &fakeStorage{t: t, path: path, state: sdk.ReplicationAbsent}
	c, err := withCallLog(fake, sdk.Logger(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	env := sdk.Environment{ID: "storage.11.13"}
	vol := sdk.Volume{Environment: env, VolumeID: 100, VolumeUUID: "0b9e1d5c-1111-4222-8333-944455556666"}

	if err := c.PrepareEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := c.StartVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if _, err := c.VolumeStatus(ctx, vol); err != nil { // passes through, not logged
		t.Fatal(err)
	}
	if err := c.PauseVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	fake.statusErr = errors.New("ret=-110")
	if _, err := c.DestroyVolume(ctx, vol); err == nil {
		t.Fatal("DestroyVolume: the backend's error was lost")
	}
	_ = c.f.Close()

	// A plugin started again appends.
	fake.statusErr = nil
	again, err := withCallLog(fake, sdk.Logger(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.PauseVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	_ = again.f.Close()

	type want struct {
		call, phase, volume string
		before              *callState
		beforeErr, err      string
	}
	wants := []want{
		{call: "PrepareEnvironment", phase: "attempted"},
		{call: "PrepareEnvironment", phase: "done"},
		{"StartVolume", "attempted", vol.VolumeUUID, &callState{sdk.ReplicationAbsent, false}, "", ""},
		{call: "StartVolume", phase: "done", volume: vol.VolumeUUID},
		{"PauseVolume", "attempted", vol.VolumeUUID, &callState{sdk.ReplicationSyncing, true}, "", ""},
		{call: "PauseVolume", phase: "done", volume: vol.VolumeUUID},
		{call: "DestroyVolume", phase: "attempted", volume: vol.VolumeUUID, beforeErr: "ret=-110"},
		{call: "DestroyVolume", phase: "done", volume: vol.VolumeUUID, err: "source unreachable"},
		// The pause the crash tests count as done twice.
		{"PauseVolume", "attempted", vol.VolumeUUID, &callState{sdk.ReplicationPaused, true}, "", ""},
		{call: "PauseVolume", phase: "done", volume: vol.VolumeUUID},
	}
	lines := readCallLines(t, path)
	if len(lines) != len(wants) {
		t.Fatalf("%d lines, want %d: %+v", len(lines), len(wants), lines)
	}
	for i, w := range wants {
		l := lines[i]
		ok := l.Call == w.call && l.Phase == w.phase && l.Volume == w.volume && l.BeforeErr == w.beforeErr && l.Err == w.err &&
			(l.Before == nil) == (w.before == nil) && (l.Before == nil || *l.Before == *w.before) &&
			l.PID == os.Getpid() && !l.Time.IsZero() && l.Env == env.ID
		if !ok {
			t.Errorf("line %d: %+v (before %+v), want %+v (before %+v)", i, l, l.Before, w, w.before)
		}
	}
	if len(fake.calls) != 5 {
		t.Errorf("calls reaching the backend: %v", fake.calls)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("call log mode %v, want 0600", st.Mode().Perm())
	}
}

// A call log that cannot be opened is an error, not a plugin serving
// without it.
func TestCallLogUnopenable(t *testing.T) {
	if _, err := withCallLog(&fakeStorage{}, sdk.Logger(), filepath.Join(t.TempDir(), "missing", "calls.log")); err == nil {
		t.Fatal("a call log in a directory that does not exist was opened")
	}
}
