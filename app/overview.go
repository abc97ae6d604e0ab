package app

import (
	"strconv"
	"strings"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Overview reads, from the cache and the leaderships held, what this
// daemon sees and leads now: the figures metrics export when scraped.
// It asks the store nothing; at 10,000 volumes it is one pass over the
// cached keys.
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

	o := ports.Overview{Volumes: map[string]int{}, Environments: map[string]int{}, LedEnvironments: ledEnvs}
	envStates := map[core.EnvironmentID]string{}
	volStates := map[core.VolumeRef]string{}
	led := map[core.VolumeRef]*ports.LedVolume{}
	c := e.cache
	c.mu.RLock()
	for k, kv := range c.keys {
		if strings.HasPrefix(k, core.ClustersPrefix) || strings.HasPrefix(k, e.cfg.LeaderPrefix) {
			continue
		}
		pk, err := core.ParseKey(k)
		if err != nil {
			continue
		}
		switch pk.Kind {
		case core.KindEnvironment:
			if _, ok := envStates[pk.Env]; !ok {
				envStates[pk.Env] = ""
			}
			if _, isLed := c.keys[core.LeaderKey(e.cfg.LeaderPrefix, k)]; !isLed {
				o.UnledEnvironments++
			}
		case core.KindEnvironmentStatus:
			envStates[pk.Env] = stateOf(kv.Value)
		case core.KindVolume:
			if _, ok := volStates[pk.Volume]; !ok {
				volStates[pk.Volume] = ""
			}
			if _, isLed := c.keys[core.LeaderKey(e.cfg.LeaderPrefix, k)]; !isLed {
				o.UnledVolumes++
			}
		case core.KindVolumeStatus:
			st, err := core.DecodeStatus(kv.Value)
			if err != nil {
				volStates[pk.Volume] = ""
				continue
			}
			volStates[pk.Volume] = string(st.StateCode)
			if ledVols[pk.Volume] {
				lv := &ports.LedVolume{State: string(st.StateCode), Lag: st.Lag}
				if st.LastSyncTime != nil {
					lv.LastSync = *st.LastSyncTime
				}
				led[pk.Volume] = lv
			}
		case core.KindSnapshot:
			if ledVols[pk.Volume] && pendingSnapshot(c.keys[core.SnapshotStatusKey(pk.Snapshot)]) {
				o.SnapshotsPending++
			}
		}
	}
	c.mu.RUnlock()

	for _, s := range envStates {
		o.Environments[s]++
	}
	for v, s := range volStates {
		o.Volumes[s]++
		if ledVols[v] && led[v] == nil {
			led[v] = &ports.LedVolume{}
		}
	}
	for v, lv := range led {
		if _, ok := volStates[v]; !ok {
			continue // a status left without its record: not a volume
		}
		lv.Environment = v.Env.String()
		lv.Volume = "volume." + strconv.FormatUint(v.VolumeID, 10)
		o.LedVolumes = append(o.LedVolumes, *lv)
	}
	return o
}

// stateOf is the state_code of a status value, "" when it does not decode.
func stateOf(value []byte) string {
	st, err := core.DecodeStatus(value)
	if err != nil {
		return ""
	}
	return string(st.StateCode)
}

// pendingSnapshot says whether a snapshot record, given its status key
// (no value: no status yet), waits for its recovery point on the target.
func pendingSnapshot(status ports.KeyValue) bool {
	if status.Value == nil {
		return true
	}
	return stateOf(status.Value) == string(core.SnapshotMirroring)
}
