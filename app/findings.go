package app

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// reportFindings reports, once each, what a status written newly records
// about the storage besides its state (docs/contract.md §2.4): a recovery
// point kept for a volume, replicas nobody asked for on an environment's
// target. Statuses are written only when they change, so a finding is
// reported when it appears or changes, not at every look.
func (e *Engine) reportFindings(ctx context.Context, to *statusTarget, was *core.Status, st core.Status) {
	var wasKept *core.KeptRecoveryPoint
	var wasUnintended []string
	if was != nil {
		wasKept, wasUnintended = was.KeptRecoveryPoint, was.UnintendedReplicas
	}
	log := e.log.With(to.subject, to.event)
	if k := st.KeptRecoveryPoint; k != nil && !sameKept(wasKept, k) {
		taken := "at an unknown time"
		if k.TakenAt != nil {
			taken = "at " + k.TakenAt.Format(time.RFC3339)
		}
		log.Info("recovery point kept", "copy", k.Name, "taken_at", k.TakenAt)
		e.report(ctx, ports.LevelInfo, core.KeptPointCode(), to.event,
			"%s %s: before the replica was deleted (a resync, a new first copy), the backend kept its newest complete recovery point, taken %s, as a standalone copy: %s; it stays usable while the new copy runs and goes once a newer recovery point has arrived",
			to.subject, to.event, taken, k.Name)
	} else if k == nil && wasKept != nil {
		log.Info("kept recovery point gone", "copy", wasKept.Name)
	}
	switch u := st.UnintendedReplicas; {
	case len(u) > 0 && !slices.Equal(u, wasUnintended):
		log.Warn("unintended replicas", "replicas", u)
		e.report(ctx, ports.LevelWarn, core.UnintendedCode(), to.event,
			"%s %s: %d replica(s) on the target that no volume of this environment asked for (nothing is removed): %s", to.subject, to.event, len(u), strings.Join(u, "; "))
	case len(u) == 0 && len(wasUnintended) > 0:
		log.Info("unintended replicas no longer reported")
	}
}

// sameKept reports whether two kept points name the same copy taken at the
// same time.
func sameKept(a, b *core.KeptRecoveryPoint) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Name != b.Name || (a.TakenAt == nil) != (b.TakenAt == nil) {
		return false
	}
	return a.TakenAt == nil || a.TakenAt.Equal(*b.TakenAt)
}
