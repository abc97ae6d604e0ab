package cephrbd

import (
	"testing"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// What rbd-mirror's replayer state settles in VolumeStatus, and what it
// leaves to the status object and the first copy.
func TestReplayerVerdict(t *testing.T) {
	for _, c := range []struct {
		st       imageReplayerState
		caughtUp bool
		want     sdk.ReplicationState // "": settles nothing
	}{
		{imageReplayerState{State: replayerReplaying}, true, sdk.ReplicationReplaying},
		{imageReplayerState{State: replayerReplaying}, false, ""},
		{imageReplayerState{State: replayerStopping}, true, ""},
		{imageReplayerState{State: replayerStopped}, true, sdk.ReplicationPaused},
		{imageReplayerState{State: replayerError}, true, sdk.ReplicationFailed},
		{imageReplayerState{State: "Starting", Description: "split-brain detected"}, false, sdk.ReplicationFailed},
		{imageReplayerState{State: replayerReplaying, Description: "split-brain detected"}, false, sdk.ReplicationFailed},
	} {
		got, ok := replayerVerdict(sdk.VolumeReplication{}, c.st, c.caughtUp)
		if ok != (c.want != "") || (ok && got.State != c.want) {
			t.Errorf("replayer %+v, caught up %v: %q (settled %v), want %q", c.st, c.caughtUp, got.State, ok, c.want)
		}
	}
}
