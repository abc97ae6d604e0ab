package cephrbd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
)

// foreignInstances returns the ids of rbd-mirror instances that replicate
// pool on the target cluster but are none of the daemons at asoks: another
// rbd-mirror (an operator's, a cephadm or Rook service) that the images
// of the pool are shared out with. Only the pool's leader knows every
// instance, so a leader that is not ours counts as foreign too. Instance
// ids our daemons had before a restart are remembered next to their
// sockets: a killed rbd-mirror stays listed until its heartbeats time out.
func foreignInstances(ctx context.Context, asoks []string, pool string) []string {
	ours := map[string]bool{}
	seen := map[string]bool{}
	for _, a := range asoks {
		for _, id := range knownInstances(a) {
			ours[id] = true
		}
		replayers, err := poolReplayersAt(ctx, a)
		if err != nil {
			continue
		}
		for _, p := range replayers {
			if p.InstanceID != "" {
				ours[p.InstanceID] = true
				rememberInstance(a, p.InstanceID)
			}
			if p.Pool != pool {
				continue
			}
			if p.LeaderID != "" {
				seen[p.LeaderID] = true
			}
			for _, id := range p.Instances {
				seen[id] = true
			}
		}
	}
	var foreign []string
	for id := range seen {
		if !ours[id] {
			foreign = append(foreign, id)
		}
	}
	slices.Sort(foreign)
	return foreign
}

// rememberInstances records the instance ids of the running rbd-mirror
// (one per pool it replicates), so foreignInstances still knows them as
// ours after it dies; false until it has joined a pool.
func (d *mirrorDaemon) rememberInstances() bool {
	ctx, cancel := context.WithTimeout(d.ctx, asokTimeout)
	defer cancel()
	replayers, err := poolReplayersAt(ctx, d.asok)
	if err != nil {
		return false
	}
	found := false
	for _, p := range replayers {
		if p.InstanceID != "" {
			rememberInstance(d.asok, p.InstanceID)
			found = true
		}
	}
	return found
}

// instancesFile lists the instance ids the rbd-mirror at asok has had.
func instancesFile(asok string) string { return filepath.Join(filepath.Dir(asok), "instances.json") }

func knownInstances(asok string) []string {
	var ids []string
	if b, err := os.ReadFile(instancesFile(asok)); err == nil {
		_ = json.Unmarshal(b, &ids)
	}
	return ids
}

// rememberInstance records id for the rbd-mirror at asok, keeping the
// last 16.
func rememberInstance(asok, id string) {
	ids := knownInstances(asok)
	if slices.Contains(ids, id) {
		return
	}
	ids = append(ids, id)
	if len(ids) > 16 {
		ids = ids[len(ids)-16:]
	}
	b, _ := json.Marshal(ids)
	_ = writePrivate(instancesFile(asok), b)
}
