package app_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
)

// mirroringVolume brings the seed's environment and volume 7 to mirroring.
func mirroringVolume(t *testing.T) *harness.Harness {
	h := harness.New(t)
	seedStorages(h)
	seedEnvironment(h, "start")
	h.Start("d1")
	h.WaitState(core.EnvironmentStatusKey(envID), core.StateMirroring)
	seedVolume(h, vol7, seedUUID, "start")
	h.WaitState(core.VolumeStatusKey(vol7), core.StateInitializing)
	h.Shared.Backend.Sync(seedUUID)
	h.TickState(core.VolumeStatusKey(vol7), core.StateMirroring, 2*time.Second) // the fast poll of an initializing volume
	return h
}

func TestStartReachesMirroring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := mirroringVolume(t)
		st, _ := h.Status(core.VolumeStatusKey(vol7))
		if st.Owner != "d1" || st.Operation != core.OpStart || st.ErrorReason != nil {
			t.Fatalf("status = %+v, want owner d1, operation start, no error", st)
		}
	})
}
