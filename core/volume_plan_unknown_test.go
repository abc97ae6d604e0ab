package core_test

import (
	"testing"

	"github.com/cdmdr/mirror/core"
)

// TestUnknownOperationWithoutStatusIsError: an operation docs/contract.md does not
// define, on a volume with no status yet, must not be "refused" into an
// empty state_code (which DecodeStatus rejects): docs/contract.md §2.5 says bad data
// gets status error with a clear reason.
func TestUnknownOperationWithoutStatusIsError(t *testing.T) {
	p := core.PlanVolume(core.VolumeInput{Operation: "restart"})
	if p.Write == nil {
		t.Fatal("no write")
	}
	if _, err := core.DecodeStatus(p.Write.Encode()); err != nil {
		t.Errorf("planned status %s does not decode: %v", p.Write.Encode(), err)
	}
	if p.Write.StateCode != core.StateError {
		t.Errorf("state_code = %q, want error", p.Write.StateCode)
	}
}
