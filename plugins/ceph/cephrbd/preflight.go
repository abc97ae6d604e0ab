package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// probeKey is a config-key under the peers' prefix that is never
// written: reading it, and the oversized write probeConfigKeySet sends,
// check the capabilities rbd-mirror's peer needs.
const probeKey = "rbd/mirror/peer/mirror-preflight-probe"

// preflight checks, changing nothing, what replication needs of an
// environment's storages beyond the pools openEnv opened: pools of the
// same name, the users' capabilities and room on the target. A refusal
// is an ErrPrecondition that says what to change.
func (e *envConns) preflight(ctx context.Context) error {
	if e.src.m.Pool != e.dst.m.Pool {
		return fmt.Errorf("the source pool %s (storage %s) and the target pool %s (storage %s) have different names: "+
			"rbd-mirror replicates a pool only into the pool of the same name, so no image would ever be copied; "+
			"use a target pool named %s (create it on the target cluster and set the storage's pool to it): %w",
			e.src.m.Pool, e.src.key(), e.dst.m.Pool, e.dst.key(), e.src.m.Pool, sdk.ErrPrecondition)
	}
	if err := e.probeCaps(ctx); err != nil {
		return err
	}
	room, err := poolSpace(ctx, e.dstConn, e.dst)
	if err != nil {
		return err
	}
	if why := room.full(); why != "" {
		return fmt.Errorf("%s; replication cannot copy anything there: %w", why, sdk.ErrPrecondition)
	}
	return nil
}

// probeCaps checks the capabilities of both users (the most privileged
// the metadata gives) with calls that change nothing.
func (e *envConns) probeCaps(ctx context.Context) error {
	osd := func(sd side) string { return "osd '" + osdCaps(sd.m.Pool) + "'" }
	for _, p := range []struct {
		sd      side
		r       role
		doing   string
		missing string
		probe   func() error
	}{
		{e.src, roleSource, "read the mirror site name (config-key get rbd/mirror/site_name), as the target's rbd-mirror does with the peer's credentials",
			"mon 'profile rbd-mirror-peer'", func() error { return probeConfigKeyGet(ctx, e.srcConn, "rbd/mirror/site_name") }},
		{e.src, roleSource, "write to pool " + e.src.m.Pool, osd(e.src), func() error { return probeWrite(ctx, e.srcIO) }},
		{e.dst, roleTarget, "read the mirror peer's address and key (config-key get rbd/mirror/peer/...)",
			"mon 'profile rbd-mirror'", func() error { return probeConfigKeyGet(ctx, e.dstConn, probeKey) }},
		{e.dst, roleTarget, "set the mirror peer's address and key (config-key set rbd/mirror/peer/...)",
			"mon 'profile rbd-mirror-peer'", func() error { return probeConfigKeySet(ctx, e.dstConn, probeKey) }},
		{e.dst, roleTarget, "write to pool " + e.dst.m.Pool, osd(e.dst), func() error { return probeWrite(ctx, e.dstIO) }},
	} {
		if err := p.probe(); err != nil {
			if isDenied(err) {
				return denied(err, p.sd, true, p.r, p.doing, p.missing)
			}
			return fmt.Errorf("check the capabilities of client.%s on storage %s: %w", p.sd.m.AdminClient, p.sd.key(), err)
		}
	}
	return nil
}

// poolRoom is what the monitors say of a pool's space (`ceph df detail`).
type poolRoom struct {
	pool, storage string
	MaxAvail      uint64 `json:"max_avail"`
	Stored        uint64 `json:"stored"`
	Objects       uint64 `json:"objects"`
	QuotaBytes    uint64 `json:"quota_bytes"`
	QuotaObjects  uint64 `json:"quota_objects"`
}

// poolSpace reads the space of sd's pool through conn.
func poolSpace(ctx context.Context, conn *rados.Conn, sd side) (poolRoom, error) {
	cmd, _ := json.Marshal(map[string]string{"prefix": "df", "detail": "detail", "format": "json"})
	out, err := call(ctx, func() ([]byte, error) {
		out, _, err := conn.MonCommand(cmd)
		return out, err
	})
	if err != nil {
		return poolRoom{}, fmt.Errorf("read the space of pool %s on storage %s (ceph df): %w", sd.m.Pool, sd.key(), err)
	}
	var df struct {
		Pools []struct {
			Name  string   `json:"name"`
			Stats poolRoom `json:"stats"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(out, &df); err != nil {
		return poolRoom{}, fmt.Errorf("read the space of pool %s on storage %s: the monitors' answer: %w", sd.m.Pool, sd.key(), err)
	}
	for _, p := range df.Pools {
		if p.Name == sd.m.Pool {
			r := p.Stats
			r.pool, r.storage = sd.m.Pool, sd.key()
			return r, nil
		}
	}
	return poolRoom{}, fmt.Errorf("pool %s does not exist on storage %s: %w", sd.m.Pool, sd.key(), sdk.ErrPrecondition)
}

// left is the room left: the pool's max_avail, or its byte quota's rest
// when that is less.
func (r poolRoom) left() uint64 {
	left := r.MaxAvail
	if r.QuotaBytes > 0 {
		left = min(left, r.QuotaBytes-min(r.Stored, r.QuotaBytes))
	}
	return left
}

// full says why the pool has no room at all ("" when it has some).
func (r poolRoom) full() string {
	switch {
	case r.QuotaBytes > 0 && r.Stored >= r.QuotaBytes:
		return fmt.Sprintf("pool %s on storage %s has reached its quota of %s (it stores %s); raise it with `ceph osd pool set-quota %s max_bytes <bytes>`",
			r.pool, r.storage, sizeText(r.QuotaBytes), sizeText(r.Stored), r.pool)
	case r.QuotaObjects > 0 && r.Objects >= r.QuotaObjects:
		return fmt.Sprintf("pool %s on storage %s has reached its quota of %d objects; raise it with `ceph osd pool set-quota %s max_objects <count>`",
			r.pool, r.storage, r.QuotaObjects, r.pool)
	case r.MaxAvail == 0:
		return fmt.Sprintf("pool %s on storage %s is full (max_avail 0 in `ceph df`); add capacity or free space on its OSDs", r.pool, r.storage)
	}
	return ""
}

// sizeText writes a byte count for operators: "16 MiB (16777216 bytes)".
func sizeText(n uint64) string {
	units := []string{"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d bytes", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + units[i] + fmt.Sprintf(" (%d bytes)", n)
}

// reason is an ErrPrecondition's message as an environment's
// description: without the sentinel's own words.
func reason(err error) string {
	return strings.TrimSuffix(err.Error(), ": "+sdk.ErrPrecondition.Error())
}

// isPrecondition says whether err is a refusal the operator must act on.
func isPrecondition(err error) bool { return errors.Is(err, sdk.ErrPrecondition) }
