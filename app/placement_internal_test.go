package app

import (
	"fmt"
	"testing"

	"github.com/cdmdr/mirror/core"
)

// Rendezvous hashing gives each of n members about 1/n of 1,000 volume
// keys, and a member joining takes about 1/(n+1) of them, from the
// others only.
func TestPreferenceSpreadsAndMovesLittle(t *testing.T) {
	env := core.EnvironmentID{Source: 11, Target: 13}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = core.VolumeKey(core.VolumeRef{Env: env, VolumeID: uint64(i + 1)})
	}
	three := []string{"dr-host-1-4711", "dr-host-2-4712", "dr-host-3-4713"}
	four := append(append([]string{}, three...), "dr-host-4-4714")
	count := map[string]int{}
	before := map[string]string{}
	for _, k := range keys {
		before[k] = preferredOf(three, k)
		count[before[k]]++
	}
	for _, m := range three {
		if n := count[m]; n < 267 || n > 400 {
			t.Errorf("%s preferred for %d of 1000 keys, want 333 ± 20 %%", m, n)
		}
	}
	moved := 0
	for _, k := range keys {
		after := preferredOf(four, k)
		if after != before[k] {
			moved++
			if after != four[3] {
				t.Fatalf("%s moved from %s to %s, not to the new member", k, before[k], after)
			}
		}
	}
	if moved < 200 || moved > 300 {
		t.Errorf("a fourth member took %d of 1000 keys, want about 250", moved)
	}
	t.Log(fmt.Sprint("three members: ", count, "; the fourth takes ", moved))
}
