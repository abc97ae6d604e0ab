package cephrbd

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd/admin"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// probeKey is a config-key under the peers' prefix that is never
// written: reading it, and the oversized write probeConfigKeySet sends,
// check the capabilities rbd-mirror's peer needs.
const probeKey = "rbd/mirror/peer/mirror-preflight-probe"

// capsRecheck is how long EnvironmentStatus trusts the last capability
// check of an environment's users; PrepareEnvironment always checks.
const capsRecheck = 5 * time.Minute

// capsCheck is the answer of the last capability check of an
// environment's users, and when it was made.
type capsCheck struct {
	at  time.Time
	err error
}

// preflight checks, changing nothing, what replication needs of an
// environment's storages beyond the pools openEnv opened: pools of the
// same name, the users' capabilities and room on the target. A refusal
// is an ErrPrecondition that says what to change. The capabilities are
// checked anew when the last check is older than recheck (0: always).
func (b *Backend) preflight(ctx context.Context, e *envConns, recheck time.Duration) error {
	if e.src.m.Pool != e.dst.m.Pool {
		return fmt.Errorf("the source pool %s (storage %s) and the target pool %s (storage %s) have different names: "+
			"rbd-mirror replicates a pool only into the pool of the same name, so no image would ever be copied; "+
			"use a target pool named %s (create it on the target cluster and set the storage's pool to it): %w",
			e.src.m.Pool, e.src.key(), e.dst.m.Pool, e.dst.key(), e.src.m.Pool, sdk.ErrPrecondition)
	}
	if err := b.checkCaps(ctx, e, recheck); err != nil {
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

// checkCaps returns the last capability check of e's users when it is
// younger than recheck, else checks them again. A check that could not
// finish (a cluster unreachable) is not remembered.
func (b *Backend) checkCaps(ctx context.Context, e *envConns, recheck time.Duration) error {
	key := capsKey(e)
	if v, ok := b.capsChecked.Load(key); ok && recheck > 0 && time.Since(v.(capsCheck).at) < recheck {
		return v.(capsCheck).err
	}
	err := e.probeCaps(ctx)
	if err == nil || isPrecondition(err) {
		b.capsChecked.Store(key, capsCheck{at: time.Now(), err: err})
	}
	return err
}

// capsKey names the check of an environment's users: a change of either
// storage's metadata (users, keys, pools, mode) makes a new one.
func capsKey(e *envConns) string {
	h := sha256.New()
	for _, sd := range []side{e.src, e.dst} {
		md, _ := json.Marshal(sd.m)
		h.Write(md)
		fmt.Fprintf(h, "\x00%s\x00%t\x00", sd.key(), sd.m.adminGiven)
	}
	return string(h.Sum(nil))
}

// probe is one capability check: what it does, as whom, and what the
// user lacks when Ceph refuses it.
type probe struct {
	sd      side
	admin   bool // conn's admin: which user of sd
	r       role
	doing   string
	missing string
	run     func(conn *rados.Conn, io *rados.IOContext) error
}

// probeCaps checks the capabilities of both sides' users (the most
// privileged the metadata gives; and the client too, which volume calls
// use, when that is another user) with calls that change nothing,
// through sessions of their own: the monitors keep a session's
// capabilities as they were when it began, so the cached connections do
// not see a capability taken away since.
func (e *envConns) probeCaps(ctx context.Context) error {
	osd := func(sd side) string { return "osd '" + osdCaps(sd.m.Pool) + "'" }
	write := func(sd side, admin bool) probe {
		return probe{sd, admin, roleOf(sd, e.src), "write to pool " + sd.m.Pool, osd(sd),
			func(_ *rados.Conn, io *rados.IOContext) error { return probeWrite(ctx, io) }}
	}
	probes := []probe{
		{e.src, true, roleSource, "read the mirror site name (config-key get rbd/mirror/site_name), as the target's rbd-mirror does with the peer's credentials",
			"mon 'profile rbd-mirror-peer'", func(c *rados.Conn, _ *rados.IOContext) error {
				return probeConfigKey(ctx, c, "get", "rbd/mirror/site_name")
			}},
		{e.src, true, roleSource, "remove a mirror peer's config-key (config-key rm rbd/mirror/peer/...), as the teardown does",
			"mon '" + peerRmCap + "'", func(c *rados.Conn, _ *rados.IOContext) error { return probeConfigKey(ctx, c, "rm", probeKey) }},
		write(e.src, true),
		{e.dst, true, roleTarget, "read the mirror peer's address and key (config-key get rbd/mirror/peer/...)",
			"mon 'profile rbd-mirror'", func(c *rados.Conn, _ *rados.IOContext) error { return probeConfigKey(ctx, c, "get", probeKey) }},
		{e.dst, true, roleTarget, "set the mirror peer's address and key (config-key set rbd/mirror/peer/...)",
			"mon 'profile rbd-mirror-peer'", func(c *rados.Conn, _ *rados.IOContext) error { return probeConfigKeySet(ctx, c, probeKey) }},
		// After the set probe: should the monitors have stored its value
		// (a raised size limit), this removes it.
		{e.dst, true, roleTarget, "remove a mirror peer's config-key (config-key rm rbd/mirror/peer/...), as the teardown does",
			"mon '" + peerRmCap + "'", func(c *rados.Conn, _ *rados.IOContext) error { return probeConfigKey(ctx, c, "rm", probeKey) }},
		write(e.dst, true),
	}
	for _, sd := range []side{e.src, e.dst} {
		if sd.m.adminGiven {
			probes = append(probes, write(sd, false))
		}
	}
	if m := e.src.m; m.MirrorMode == modeSnapshot && m.MirrorSnapshotInterval != "" {
		probes = append(probes, probe{e.src, false, roleSource, "list the mirror snapshot schedules of pool " + m.Pool + " (rbd_support manager module)",
			"mgr '" + mgrCaps(m.Pool) + "'", func(c *rados.Conn, _ *rados.IOContext) error {
				return do(ctx, func() error {
					_, err := admin.NewFromConn(c).MirrorSnashotSchedule().List(admin.NewLevelSpec(m.Pool, "", ""))
					return err
				})
			}})
	}
	sessions := map[string]*session{}
	defer func() {
		for _, s := range sessions {
			releaseAfter(ctx, s.close)
		}
	}()
	for _, p := range probes {
		user := p.sd.m.Client
		if p.admin {
			user = p.sd.m.AdminClient
		}
		s, ok := sessions[p.sd.key()+"/"+user]
		if !ok {
			var err error
			if s, err = openSession(ctx, p.sd, p.admin); err != nil {
				return err
			}
			sessions[p.sd.key()+"/"+user] = s
		}
		if err := p.run(s.conn, s.io); err != nil {
			if isDenied(err) {
				return denied(err, p.sd, p.admin, p.r, p.doing, p.missing)
			}
			return fmt.Errorf("check the capabilities of client.%s on storage %s: %w", user, p.sd.key(), err)
		}
	}
	return nil
}

// session is a connection of its own, with the side's pool open.
type session struct {
	conn *rados.Conn
	io   *rados.IOContext
}

func (s *session) close() {
	if s.io != nil {
		s.io.Destroy()
	}
	s.conn.Shutdown()
}

// openSession connects anew to sd's cluster, as its most privileged user
// (admin) or its client, and opens its pool. The call is bounded by the
// connection's own timeouts.
func openSession(ctx context.Context, sd side, admin bool) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	user, keyring := sd.m.Client, sd.files.Keyring
	if admin {
		user, keyring = sd.m.AdminClient, sd.files.AdminKeyring
	}
	conn, err := connect(sd, user, keyring)
	if err != nil {
		return nil, fmt.Errorf("connect to storage %s as client.%s: %w: %w", sd.key(), user, err, sdk.ErrRetryable)
	}
	io, err := conn.OpenIOContext(sd.m.Pool)
	if err != nil {
		conn.Shutdown()
		if errors.Is(err, rados.ErrNotFound) {
			return nil, errNoPool(sd)
		}
		return nil, fmt.Errorf("open pool %s on storage %s: %w", sd.m.Pool, sd.key(), err)
	}
	return &session{conn: conn, io: io}, nil
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

// dfLag bounds the wait for a new pool's space figures: `ceph df` reports
// what the manager last sent the monitors (every mgr_stats_period, 5 s by
// default), so a pool created a moment ago exists but has no figures yet.
const dfLag = 20 * time.Second

// poolSpace reads the space of sd's pool through conn. A pool that exists
// but has no figures yet is waited for (dfLag), then retried later.
func poolSpace(ctx context.Context, conn *rados.Conn, sd side) (poolRoom, error) {
	deadline := time.Now().Add(dfLag)
	for {
		r, found, err := poolDF(ctx, conn, sd)
		if err != nil || found {
			return r, err
		}
		if _, err := call(ctx, func() (int64, error) { return conn.GetPoolByName(sd.m.Pool) }); err != nil {
			if errors.Is(err, rados.ErrNotFound) {
				return poolRoom{}, errNoPool(sd)
			}
			return poolRoom{}, fmt.Errorf("look up pool %s on storage %s: %w", sd.m.Pool, sd.key(), err)
		}
		if time.Now().After(deadline) {
			return poolRoom{}, fmt.Errorf("pool %s on storage %s exists but `ceph df` has no figures for it yet "+
				"(the manager reports new pools within seconds; is a ceph-mgr running?): %w", sd.m.Pool, sd.key(), sdk.ErrRetryable)
		}
		select {
		case <-ctx.Done():
			return poolRoom{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// poolDF reads sd's pool from `ceph df detail`; found is false when the
// monitors list no such pool.
func poolDF(ctx context.Context, conn *rados.Conn, sd side) (poolRoom, bool, error) {
	cmd, _ := json.Marshal(map[string]string{"prefix": "df", "detail": "detail", "format": "json"})
	out, err := call(ctx, func() ([]byte, error) {
		out, _, err := conn.MonCommand(cmd)
		return out, err
	})
	if err != nil {
		return poolRoom{}, false, fmt.Errorf("read the space of pool %s on storage %s (ceph df): %w", sd.m.Pool, sd.key(), err)
	}
	var df struct {
		Pools []struct {
			Name  string   `json:"name"`
			Stats poolRoom `json:"stats"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(out, &df); err != nil {
		return poolRoom{}, false, fmt.Errorf("read the space of pool %s on storage %s: the monitors' answer: %w", sd.m.Pool, sd.key(), err)
	}
	for _, p := range df.Pools {
		if p.Name == sd.m.Pool {
			r := p.Stats
			r.pool, r.storage = sd.m.Pool, sd.key()
			return r, true, nil
		}
	}
	return poolRoom{}, false, nil
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
