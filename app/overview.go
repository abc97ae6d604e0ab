package app

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Overview reads, from the cache and the leaderships held, what this
// daemon sees and leads now: the figures metrics export when scraped.
// It asks the store nothing. The cache's lock is held only to copy the
// key-values (the values are never changed in place); parsing comes
// after, so a scrape does not hold the watchers back.
func (e *Engine) Overview() ports.Overview {
	m := e.monitor
	m.mu.Lock()
	var ledEnvs int
	ledVols := map[core.VolumeRef]bool{}
	for r := range m.held {
		if r.Kind == core.ResourceEnvironment {
			ledEnvs++
		} else {
			ledVols[r.Volume] = true
		}
	}
	m.mu.Unlock()

	type entry struct {
		kv  ports.KeyValue
		led bool // a record whose leader key is present
	}
	c := e.cache
	c.mu.RLock()
	entries := make([]entry, 0, len(c.keys))
	for k, kv := range c.keys {
		if !strings.HasPrefix(k, core.VolumePrefix) && !strings.HasPrefix(k, core.EnvironmentPrefix) {
			continue
		}
		_, led := c.keys[e.cfg.LeaderPrefix+k]
		entries = append(entries, entry{kv, led})
	}
	c.mu.RUnlock()

	o := ports.Overview{Volumes: map[string]int{}, Environments: map[string]int{}, LedEnvironments: ledEnvs}
	envStates := map[core.EnvironmentID]string{}
	volStates := map[core.VolumeRef]string{}
	led := map[core.VolumeRef]*ports.LedVolume{}
	snapStatus := map[core.SnapshotRef]string{}
	var snapshots []core.SnapshotRef
	for _, en := range entries {
		pk, err := core.ParseKey(en.kv.Key)
		if err != nil {
			continue
		}
		switch pk.Kind {
		case core.KindEnvironment:
			if _, ok := envStates[pk.Env]; !ok {
				envStates[pk.Env] = ""
			}
			if !en.led {
				o.UnledEnvironments++
			}
		case core.KindEnvironmentStatus:
			envStates[pk.Env] = stateOf(en.kv.Value)
		case core.KindVolume:
			if _, ok := volStates[pk.Volume]; !ok {
				volStates[pk.Volume] = ""
			}
			if !en.led {
				o.UnledVolumes++
			}
		case core.KindVolumeStatus:
			if !ledVols[pk.Volume] {
				volStates[pk.Volume] = stateOf(en.kv.Value)
				continue
			}
			lv := &ports.LedVolume{}
			if st, err := core.DecodeStatus(en.kv.Value); err == nil {
				lv.State, lv.Lag = string(st.StateCode), st.Lag
				if st.LastSyncTime != nil {
					lv.LastSync = *st.LastSyncTime
				}
			}
			volStates[pk.Volume] = lv.State
			led[pk.Volume] = lv
		case core.KindSnapshot:
			if ledVols[pk.Volume] {
				snapshots = append(snapshots, pk.Snapshot)
			}
		case core.KindSnapshotStatus:
			if ledVols[pk.Volume] {
				snapStatus[pk.Snapshot] = stateOf(en.kv.Value)
			}
		}
	}

	for _, s := range envStates {
		o.Environments[s]++
	}
	for _, s := range snapshots {
		// No status yet, or on its way: the recovery point is pending.
		if st, ok := snapStatus[s]; !ok || st == string(core.SnapshotMirroring) {
			o.SnapshotsPending++
		}
	}
	for v, s := range volStates {
		o.Volumes[s]++
		if !ledVols[v] {
			continue
		}
		lv := led[v]
		if lv == nil {
			lv = &ports.LedVolume{} // no status yet
		}
		lv.Environment = v.Env.String()
		lv.Volume = "volume." + strconv.FormatUint(v.VolumeID, 10)
		o.LedVolumes = append(o.LedVolumes, *lv)
	}
	return o
}

// stateOf is the state_code of a status value, "" when it has none. Only
// the state is read: at 100,000 volumes a scrape decodes every status.
func stateOf(value []byte) string {
	var st struct {
		StateCode string `json:"state_code"`
	}
	if json.Unmarshal(value, &st) != nil {
		return ""
	}
	return st.StateCode
}
