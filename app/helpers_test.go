package app_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Durations the harness's config uses (harness.New).
const (
	fastPoll = 2 * time.Second
	poll     = 30 * time.Second
	resync   = time.Minute
)

// More source volumes of the seed's environment.
const (
	uuid8 = "0b9f4c2e-7d51-4d8e-9a0c-3f2b6e1d8a08"
	uuid9 = "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e09"
)

var (
	vol8 = core.VolumeRef{Env: envID, VolumeID: 8}
	vol9 = core.VolumeRef{Env: envID, VolumeID: 9}
)

// mirroringEnv seeds the storages and environment storage.11.13, starts
// d1 and waits for the environment to be mirroring.
func mirroringEnv(t *testing.T) (*harness.Harness, *harness.Daemon) {
	t.Helper()
	h := harness.New(t)
	seedStorages(h)
	seedEnvironment(h, "start")
	d := h.Start("d1")
	h.TickState(core.EnvironmentStatusKey(envID), core.StateMirroring, fastPoll)
	return h, d
}

// bringUp starts volume ref (source uuid) and waits until it is mirroring.
// The backend finishes the first copy at its first look.
func bringUp(h *harness.Harness, ref core.VolumeRef, uuid string) {
	h.T.Helper()
	h.Shared.Backend.Sync(uuid)
	seedVolume(h, ref, uuid, "start")
	h.TickState(core.VolumeStatusKey(ref), core.StateMirroring, fastPoll)
}

// volumeKeys lists the keys of mirror volume ref still in the store: its
// record and everything under it, never those of volume.{id}0.
func volumeKeys(h *harness.Harness, ref core.VolumeRef) []string {
	var out []string
	for k := range h.Shared.KV.Dump() {
		if k == core.VolumeKey(ref) || strings.HasPrefix(k, core.VolumeChildrenPrefix(ref)) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// waitVolumeGone waits, ticking, until none of the volume's keys is left.
func waitVolumeGone(h *harness.Harness, ref core.VolumeRef) {
	h.T.Helper()
	h.WaitTicking(core.VolumeKey(ref)+" and its keys deleted", fastPoll, func() bool { return len(volumeKeys(h, ref)) == 0 })
}

// history returns every change of the store under prefix so far, oldest
// first, read back from the fake's full history (a watch from revision 1).
func history(t *testing.T, h *harness.Harness, prefix string) []ports.WatchEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev := h.Shared.KV.Revision()
	var out []ports.WatchEvent
	if rev <= 1 {
		return nil
	}
	for ev := range h.Shared.KV.Watch(ctx, "", 1) {
		if ev.Err != nil {
			t.Fatalf("history: %v", ev.Err)
		}
		if strings.HasPrefix(ev.KV.Key, prefix) {
			out = append(out, ev)
		}
		if ev.KV.ModRevision >= rev {
			break
		}
	}
	return out
}

// statuses returns every status written at key, oldest first.
func statuses(t *testing.T, h *harness.Harness, key string) []core.Status {
	t.Helper()
	var out []core.Status
	for _, ev := range history(t, h, key) {
		if ev.KV.Key != key || ev.Type != ports.EventPut {
			continue
		}
		st, err := core.DecodeStatus(ev.KV.Value)
		if err != nil {
			t.Fatalf("status %s in history: %v (%s)", key, err, ev.KV.Value)
		}
		out = append(out, st)
	}
	return out
}

// states returns the state codes written at key, oldest first, without
// consecutive repeats.
func states(t *testing.T, h *harness.Harness, key string) []core.State {
	t.Helper()
	var out []core.State
	for _, st := range statuses(t, h, key) {
		if len(out) == 0 || out[len(out)-1] != st.StateCode {
			out = append(out, st.StateCode)
		}
	}
	return out
}

// wantStates checks that the states written at key, in order, end with
// want (what came before, like an earlier operation's states, is not
// checked).
func wantStates(t *testing.T, h *harness.Harness, key string, want ...core.State) {
	t.Helper()
	got := states(t, h, key)
	if len(got) < len(want) || !slices.Equal(got[len(got)-len(want):], want) {
		t.Fatalf("states written at %s = %v, want them to end with %v", key, got, want)
	}
}

// wantPassedThrough checks that the states written at key contain want as
// a subsequence, in order.
func wantPassedThrough(t *testing.T, h *harness.Harness, key string, want ...core.State) {
	t.Helper()
	got := states(t, h, key)
	i := 0
	for _, s := range got {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Fatalf("states written at %s = %v, want them to pass through %v", key, got, want)
	}
}

// eventsWith returns the reported events whose code contains code.
func eventsWith(h *harness.Harness, code string) []ports.Event {
	var out []ports.Event
	for _, e := range h.Shared.Events.Events() {
		if strings.Contains(e.Code, code) {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for an event whose code contains code and returns it.
func waitEvent(h *harness.Harness, code string) ports.Event {
	h.T.Helper()
	var ev ports.Event
	h.WaitFor("an event with code "+code, func() bool {
		evs := eventsWith(h, code)
		if len(evs) == 0 {
			return false
		}
		ev = evs[0]
		return true
	})
	return ev
}

// callsFor counts the backend calls of method on subject (a volume UUID,
// snapshot UUID or environment id).
func callsFor(h *harness.Harness, method, subject string) int {
	n := 0
	for _, c := range h.Shared.Backend.CallLog() {
		if c == method+" "+subject {
			n++
		}
	}
	return n
}

// wantStatus checks the status at key: its state and, if code is not
// empty, that its error_reason code contains code.
func wantStatus(t *testing.T, h *harness.Harness, key string, state core.State, code string) core.Status {
	t.Helper()
	st, ok := h.Status(key)
	if !ok {
		t.Fatalf("%s: no status, want %s", key, state)
	}
	if st.StateCode != state {
		t.Fatalf("%s: state %s, want %s (status %+v)", key, st.StateCode, state, st)
	}
	if code == "" {
		if st.ErrorReason != nil {
			t.Fatalf("%s: unexpected error_reason %+v", key, *st.ErrorReason)
		}
		return st
	}
	if st.ErrorReason == nil || !strings.Contains(st.ErrorReason.Code, code) {
		t.Fatalf("%s: error_reason %+v, want a code containing %q", key, st.ErrorReason, code)
	}
	if strings.TrimSpace(st.ErrorReason.Contents) == "" {
		t.Fatalf("%s: error_reason %q has no contents", key, st.ErrorReason.Code)
	}
	return st
}

// wantNoError checks that no error status was ever written at key.
func wantNoError(t *testing.T, h *harness.Harness, key string) {
	t.Helper()
	for _, st := range statuses(t, h, key) {
		if st.StateCode == core.StateError {
			t.Fatalf("%s was written %+v; states %v", key, st, states(t, h, key))
		}
	}
}

// failLooks makes every look at volumes fail with err (nil: succeed
// again): the backend answers neither VolumeStatus nor the bulk poll's
// VolumeStatuses.
func failLooks(h *harness.Harness, err error) {
	h.Shared.Backend.FailAlways("VolumeStatus", err)
	h.Shared.Backend.FailAlways("VolumeStatuses", err)
}

// looks counts the backend's answers about volumes, one by one or in bulk.
func looks(h *harness.Harness) int {
	return h.Shared.Backend.Calls("VolumeStatus") + h.Shared.Backend.Calls("VolumeStatuses")
}
