package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// Each rbd-mirror the plugin runs is recorded in the cluster, one record
// per pool it replays (its instance there: the pool replayer's rados
// client), in that pool's metadata (instanceKey). From the records:
//   - any host knows the plugin's own instances, current and past, so a
//     takeover never reports them as a foreign rbd-mirror while a dead
//     one's registration times out;
//   - a host starting the environment's rbd-mirror blocklists the ones
//     recorded before it (dead, or on a host that lost the environment),
//     so the new one takes the pool's leader lock and the images' locks at
//     once instead of after the watch timeout. Only recorded instances of
//     the same environment are blocklisted, never a foreign rbd-mirror.

// instanceRecord is one recorded rbd-mirror instance.
type instanceRecord struct {
	Env        string `json:"env"`
	InstanceID string `json:"instance_id"`
	// Addr is its rados client's address, what a blocklist names.
	Addr          string `json:"addr"`
	Host          string `json:"host"`
	Pid           int    `json:"pid"`
	RecordedAt    int64  `json:"recorded_at"`
	BlocklistedAt int64  `json:"blocklisted_at,omitempty"`
	// FencedAt is set when a keep fenced the instance while it lived
	// (keep_fence.go): its host then replaces the process
	// (rbdmirror_replace.go). A blocklist by a starting rbd-mirror sets
	// only BlocklistedAt, so two hosts never take turns restarting.
	FencedAt int64 `json:"fenced_at,omitempty"`
}

// Records kept per environment and pool, and how long a blocklist lasts
// (a dead client needs none longer; one that lived on has been stopped
// by its host's release long before).
const (
	instancesKept   = 16
	blocklistExpire = time.Hour
)

// instanceLockName is the lock every rbd-mirror instance holds on its own
// object rbd_mirror_instance.<id> (rbd-mirror's InstanceWatcher).
const instanceLockName = "rbd_lock"

// instanceAddr reads instance id's client address from the lock it holds
// on its object in pool io.
func instanceAddr(io *rados.IOContext, id string) (string, error) {
	info, err := io.ListLockers("rbd_mirror_instance."+id, instanceLockName)
	if err != nil {
		return "", err
	}
	for i, c := range info.Clients {
		if c == "client."+id && i < len(info.Addrs) && info.Addrs[i] != "" {
			return info.Addrs[i], nil
		}
	}
	return "", fmt.Errorf("instance %s holds no lock on its object yet", id)
}

// recordInstance records the rbd-mirror's instance in pool p once its
// address is known, and keeps the environment's newest records only.
func (d *mirrorDaemon) recordInstance(ctx context.Context, io *rados.IOContext, p poolReplayer) {
	key := p.Pool + "/" + p.InstanceID
	if p.InstanceID == "" || d.recorded[key] {
		return
	}
	// An instance recorded by an earlier plugin process (an adopted
	// rbd-mirror) keeps its record, and with it a fence's mark.
	known, err := call(ctx, func() (bool, error) {
		_, ok, err := getPoolMeta(io, instanceKey(d.envID, p.InstanceID))
		return ok, err
	})
	if err != nil || known {
		d.recorded[key] = known
		return
	}
	addr, err := call(ctx, func() (string, error) { return instanceAddr(io, p.InstanceID) })
	if err != nil {
		return // not registered yet: the next round tries again
	}
	rec := instanceRecord{Env: d.envID, InstanceID: p.InstanceID, Addr: addr, Host: d.host, Pid: d.currentPid(), RecordedAt: time.Now().Unix()}
	data, _ := json.Marshal(rec)
	if do(ctx, func() error { return setPoolMeta(io, instanceKey(d.envID, p.InstanceID), string(data)) }) != nil {
		return
	}
	d.recorded[key] = true
	d.log.Info("recorded rbd-mirror instance", "env", d.envID, "pool", p.Pool, "instance", p.InstanceID, "addr", addr)
	recs, err := instanceRecords(ctx, io, d.envID)
	if err != nil || len(recs) <= instancesKept {
		return
	}
	for _, old := range recs[:len(recs)-instancesKept] {
		_ = do(ctx, func() error { return removePoolMeta(io, instanceKey(d.envID, old.InstanceID)) })
	}
}

// instanceRecords reads the records of envID ("" for every
// environment's) in pool io, oldest first.
func instanceRecords(ctx context.Context, io *rados.IOContext, envID string) ([]instanceRecord, error) {
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(io, instancePrefix(envID)) })
	if err != nil {
		return nil, fmt.Errorf("read the rbd-mirror instances recorded: %w", err)
	}
	var out []instanceRecord
	for k, v := range kv {
		var r instanceRecord
		if json.Unmarshal([]byte(v), &r) != nil || r.InstanceID == "" {
			continue
		}
		if envID != "" && strings.TrimPrefix(k, instancePrefix(envID)) != r.InstanceID {
			continue // another environment whose id starts with envID + "."
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b instanceRecord) int { return int(a.RecordedAt - b.RecordedAt) })
	return out, nil
}

// blocklistEarlier blocklists every instance recorded for the environment
// in its target pool that is not blocklisted yet. The supervisor calls it
// just before starting an rbd-mirror: none of those is this host's live
// one then. Failures are logged: the new rbd-mirror then waits for the
// old locks to time out, as it would without this.
func (d *mirrorDaemon) blocklistEarlier() {
	ctx, cancel := context.WithTimeout(d.ctx, opTimeout)
	defer cancel()
	conn, err := d.b.conn(ctx, d.dst, true)
	if err != nil {
		d.log.Warn("cannot blocklist earlier rbd-mirror instances", "env", d.envID, "error", err)
		return
	}
	io, err := d.b.ioctx(ctx, d.dst, true)
	if err != nil {
		d.log.Warn("cannot blocklist earlier rbd-mirror instances", "env", d.envID, "error", err)
		return
	}
	defer releaseAfter(ctx, io.Destroy)
	recs, err := instanceRecords(ctx, io, d.envID)
	if err != nil {
		d.log.Warn("cannot blocklist earlier rbd-mirror instances", "env", d.envID, "error", err)
		return
	}
	for _, r := range recs {
		if r.BlocklistedAt != 0 || r.Addr == "" {
			continue
		}
		if err := blocklist(ctx, conn, r.Addr); err != nil {
			d.log.Warn("cannot blocklist an earlier rbd-mirror instance", "env", d.envID, "instance", r.InstanceID, "addr", r.Addr, "error", err)
			continue
		}
		d.log.Info("blocklisted an earlier rbd-mirror instance", "env", d.envID, "instance", r.InstanceID, "addr", r.Addr, "host", r.Host)
		breakLeaderLock(ctx, io, r.InstanceID)
		r.BlocklistedAt = time.Now().Unix()
		data, _ := json.Marshal(r)
		_ = do(ctx, func() error { return setPoolMeta(io, instanceKey(d.envID, r.InstanceID), string(data)) })
	}
}

// breakLeaderLock breaks the pool's rbd-mirror leader lock when the
// blocklisted instance id holds it, as rbd-mirror itself would after a
// few missed heartbeats: the new rbd-mirror takes the lead on its first
// try.
func breakLeaderLock(ctx context.Context, io *rados.IOContext, id string) {
	_ = do(ctx, func() error {
		info, err := io.ListLockers(leaderObject, instanceLockName)
		if err != nil {
			return err
		}
		for i, c := range info.Clients {
			if c == "client."+id && i < len(info.Cookies) {
				_, err = io.BreakLock(leaderObject, instanceLockName, c, info.Cookies[i])
			}
		}
		return err
	})
}

// leaderObject is the object whose lock the pool's rbd-mirror leader
// holds.
const leaderObject = "rbd_mirror_leader"

// blocklist adds a client address to the cluster's OSD blocklist for
// blocklistExpire (Ceph 16: "osd blocklist add").
func blocklist(ctx context.Context, conn *rados.Conn, addr string) error {
	cmd, _ := json.Marshal(map[string]any{
		// A float literal: the monitors refuse an integer for a CephFloat.
		"prefix": "osd blocklist", "blocklistop": "add", "addr": addr,
		"expire": json.Number(fmt.Sprintf("%.1f", blocklistExpire.Seconds())),
	})
	return do(ctx, func() error {
		_, info, err := conn.MonCommand(cmd)
		if err != nil {
			return fmt.Errorf("%w: %s", err, info)
		}
		return nil
	})
}

// foreignInstances returns the ids of rbd-mirror instances that replicate
// pool on the target cluster but are none the plugin ran: another
// rbd-mirror (an operator's, a cephadm or Rook service) that the images
// of the pool are shared out with. Only the pool's leader knows every
// instance, so a leader that is not ours counts as foreign too. known
// are the instances recorded in the cluster (any host's, dead ones too:
// a killed rbd-mirror stays listed until its heartbeats time out).
func foreignInstances(ctx context.Context, asoks []string, pool string, known map[string]bool) []string {
	seen := map[string]bool{}
	ours := map[string]bool{}
	for _, a := range asoks {
		replayers, err := poolReplayersAt(ctx, a)
		if err != nil {
			continue
		}
		for _, p := range replayers {
			ours[p.InstanceID] = true
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
		if !ours[id] && !known[id] {
			foreign = append(foreign, id)
		}
	}
	slices.Sort(foreign)
	return foreign
}

// knownInstances are the ids of every instance recorded in pool io.
func knownInstances(ctx context.Context, io *rados.IOContext) (map[string]bool, error) {
	recs, err := instanceRecords(ctx, io, "")
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, r := range recs {
		known[r.InstanceID] = true
	}
	retired, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(io, retiredPrefix) })
	if err != nil {
		return nil, fmt.Errorf("read the rbd-mirror instances retired: %w", err)
	}
	for k := range retired {
		known[strings.TrimPrefix(k, retiredPrefix)] = true
	}
	return known, nil
}

// An environment's teardown retires its instance records rather than
// forgetting them: an rbd-mirror killed while its remote was frozen stays
// registered in the pool until another one's leader times it out, and
// must not be taken for a foreign one meanwhile. Retired records are
// kept for retiredFor, the pool's last rbd-mirror may be gone for a
// while, and pruned by later teardowns.
const (
	retiredPrefix = metaPrefix + "retired-rbd-mirror."
	retiredFor    = time.Hour
)

// retireInstances moves envID's instance records to retired ones, and
// prunes retired ones older than retiredFor.
func retireInstances(ctx context.Context, io *rados.IOContext, envID string) error {
	recs, err := instanceRecords(ctx, io, envID)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	for _, r := range recs {
		if err := do(ctx, func() error { return setPoolMeta(io, retiredPrefix+r.InstanceID, strconv.FormatInt(now, 10)) }); err != nil {
			return fmt.Errorf("retire rbd-mirror instance %s: %w", r.InstanceID, err)
		}
	}
	retired, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(io, retiredPrefix) })
	if err != nil {
		return fmt.Errorf("read the rbd-mirror instances retired: %w", err)
	}
	for k, v := range retired {
		if at, err := strconv.ParseInt(v, 10, 64); err == nil && now-at < int64(retiredFor/time.Second) {
			continue
		}
		if err := do(ctx, func() error { return removePoolMeta(io, k) }); err != nil {
			return fmt.Errorf("prune retired record %s: %w", k, err)
		}
	}
	return nil
}

// rewindCopies sets the target pool's incomplete snapshot-mode copies
// back by one object (copyprogress.go), once no earlier rbd-mirror can
// write their progress.
func (d *mirrorDaemon) rewindCopies() {
	ctx, cancel := context.WithTimeout(d.ctx, 2*opTimeout)
	defer cancel()
	io, err := d.b.ioctx(ctx, d.dst, true)
	if err != nil {
		d.log.Warn("cannot set back interrupted copies", "env", d.envID, "error", err)
		return
	}
	defer releaseAfter(ctx, io.Destroy)
	n, err := rewindCopies(ctx, io)
	if err != nil {
		d.log.Warn("cannot set back interrupted copies", "env", d.envID, "error", err)
	}
	if n > 0 {
		d.log.Info("set back interrupted snapshot-mode copies by one object", "env", d.envID, "copies", n)
	}
}
