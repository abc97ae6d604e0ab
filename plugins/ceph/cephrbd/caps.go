package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The Ceph capabilities a storage's client needs (docs/ceph.md), found
// on a Ceph 16 lab, call by call:
//
//   - osd 'profile rbd pool=P', on both sides: the images, the pool's
//     mirror mode and peers (objects rbd_mirroring, rbd_info), the pool
//     metadata where the plugin keeps its records, and rbd-mirror's own
//     objects.
//   - on a target, mon 'profile rbd-mirror': `config-key get` under
//     rbd/mirror/, where the pool's peer keeps the source's address and
//     key; both the plugin and its rbd-mirror read them.
//   - on a target, mon 'profile rbd-mirror-peer': `config-key set` under
//     rbd/mirror/peer/, to give the peer the source's address and key.
//   - on a source, mon 'profile rbd-mirror-peer': without admin
//     credentials the source's client is the peer user the target's
//     rbd-mirror reads the source with; it reads the site name
//     (config-key rbd/mirror/site_name).
//   - on both sides, `config-key rm` under rbd/mirror/peer/ (peerRmCap):
//     removing a peer, at teardown, removes its config-key first.
//   - every rbd mon profile allows `osd blocklist add` of a client
//     address, which the exclusive lock and the plugin's takeover of a
//     dead rbd-mirror use.
//
// Admin credentials add one thing: the plugin creates the peer user
// client.rbd-mirror-peer on the source (`auth get-or-create`) instead of
// handing the source's own client and key to the target.

// role is what a storage is in an environment.
type role string

const (
	roleSource role = "source"
	roleTarget role = "target"
)

// roleOf is the role of side sd in an environment whose source is src.
func roleOf(sd, src side) role {
	if sd.key() == src.key() {
		return roleSource
	}
	return roleTarget
}

// Mon capabilities of a storage's client, per role. No rbd profile
// allows removing a peer's config-key, which removing the peer does
// first (the target's rx peer; the tx peer rbd-mirror registers on the
// source): peerRmCap allows it.
const (
	peerRmCap     = `allow command "config-key rm" with key prefix rbd/mirror/peer/`
	sourceMonCaps = "profile rbd-mirror-peer, " + peerRmCap
	targetMonCaps = "profile rbd-mirror, profile rbd-mirror-peer, " + peerRmCap
)

// mgrCaps is the manager capability a source's client needs for mirror
// snapshot schedules (snapshot mode with mirror_snapshot_interval).
func mgrCaps(pool string) string { return "profile rbd pool=" + pool }

// osdCaps is the OSD capability a storage's client needs on its pool.
func osdCaps(pool string) string { return "profile rbd pool=" + pool }

// capsCommand is the command that gives sd's user the capabilities a
// storage needs in role r.
func capsCommand(user string, r role, m meta) string {
	mon := sourceMonCaps
	if r == roleTarget {
		mon = targetMonCaps
	}
	cmd := fmt.Sprintf("ceph auth caps client.%s mon '%s' osd '%s'", user, mon, osdCaps(m.Pool))
	if r == roleSource && m.MirrorMode == modeSnapshot && m.MirrorSnapshotInterval != "" {
		cmd += fmt.Sprintf(" mgr '%s'", mgrCaps(m.Pool))
	}
	return cmd
}

// isDenied says whether Ceph refused a call for a missing capability:
// the monitors answer EACCES, the OSDs EPERM.
func isDenied(err error) bool {
	return isErrno(err, syscall.EACCES) || isErrno(err, syscall.EPERM)
}

// deniedError is a refusal for a missing capability: the operator must
// change the user's capabilities, so retrying unchanged cannot help.
type deniedError struct {
	msg string
	err error
}

func (e *deniedError) Error() string { return e.msg }
func (e *deniedError) Unwrap() []error {
	return []error{e.err, sdk.ErrPrecondition}
}

// denied explains err, when Ceph refused it for a missing capability, as
// an ErrPrecondition naming the user, the storage, what was being done
// and what to give the user; other errors are returned unchanged. admin
// says which credentials the call used (conn's admin), r the storage's
// role, missing the capability found missing ("" when not known).
func denied(err error, sd side, admin bool, r role, doing, missing string) error {
	var d *deniedError
	if err == nil || errors.As(err, &d) || !isDenied(err) {
		return err
	}
	user := sd.m.Client
	if admin {
		user = sd.m.AdminClient
	}
	lacks := ""
	if missing != "" {
		lacks = " it lacks " + missing + ";"
	}
	var fix string
	if admin && sd.m.adminGiven {
		fix = fmt.Sprintf("admin_client must be an administrator of the cluster (mon 'allow *' osd 'allow *'), "+
			"or leave admin_client and admin_keyring out of the storage's metadata and give its client what a %s needs: `%s`",
			r, capsCommand(sd.m.Client, r, sd.m))
	} else {
		fix = fmt.Sprintf("give it what a %s storage's client needs: `%s` (this replaces the user's capabilities: add any others it needs)",
			r, capsCommand(user, r, sd.m))
	}
	msg := fmt.Sprintf("Ceph refused client.%s on storage %s (the %s) to %s (%v):%s %s", user, sd.key(), r, doing, err, lacks, fix)
	if doing == "" {
		msg = fmt.Sprintf("Ceph refused client.%s on storage %s (the %s): %v;%s %s", user, sd.key(), r, err, lacks, fix)
	}
	return &deniedError{msg: msg, err: err}
}

// explainDenied is denied for a call on env that does not know which
// side Ceph refused: the side its message names, or both. admin says
// which users the call used (conn's admin). A public method whose calls
// do not explain their refusals ends with it.
func explainDenied(err error, env sdk.Environment, admin bool) error {
	var d *deniedError
	if err == nil || errors.As(err, &d) || !isDenied(err) {
		return err
	}
	src, serr := parseMeta(env.Source)
	dst, derr := parseMeta(env.Target)
	if serr != nil || derr != nil {
		return err
	}
	sides := []side{{s: env.Source, m: src}, {s: env.Target, m: dst}}
	roles := []role{roleSource, roleTarget}
	inSrc, inDst := strings.Contains(err.Error(), sides[0].key()), strings.Contains(err.Error(), sides[1].key())
	switch {
	case inSrc && !inDst:
		return denied(err, sides[0], admin, roleSource, "", "")
	case inDst && !inSrc:
		return denied(err, sides[1], admin, roleTarget, "", "")
	}
	var needs []string
	for i, sd := range sides {
		user := sd.m.Client
		if admin {
			user = sd.m.AdminClient
		}
		needs = append(needs, fmt.Sprintf("client.%s on storage %s (the %s) needs `%s`", user, sd.key(), roles[i], capsCommand(user, roles[i], sd.m)))
	}
	return &deniedError{
		msg: fmt.Sprintf("Ceph refused a call for a missing capability (%v): %s (this replaces a user's capabilities: add any others it needs)",
			err, strings.Join(needs, "; ")),
		err: err,
	}
}

// probeObject is an object that never exists: writing to it with an
// assertion that it exists checks the write capability and changes
// nothing.
const probeObject = "mirror_preflight_probe"

// probeWrite checks that the user may write to the pool io (a session's
// own): the OSDs check capabilities before the op, whose assertion then
// fails. A full pool would hold the write until the OSD timeout, so it is
// sent with FULL_TRY and refused at once (EDQUOT, ENOSPC); that answer
// is no capability's, and the room check after it says the pool is full.
func probeWrite(ctx context.Context, io *rados.IOContext) error {
	if err := io.SetPoolFullTry(); err != nil {
		return fmt.Errorf("set FULL_TRY on the probe's pool context: %w", err)
	}
	err := do(ctx, func() error {
		op := rados.CreateWriteOp()
		defer op.Release()
		op.AssertExists()
		op.SetOmap(map[string][]byte{"probe": nil})
		return operate(op, io, probeObject)
	})
	if errors.Is(err, rados.ErrNotFound) || isErrno(err, syscall.ENOENT) ||
		isErrno(err, syscall.EDQUOT) || isErrno(err, syscall.ENOSPC) {
		return nil
	}
	return err
}

// probeConfigKey checks that the user may run the config-key command
// ("get" or "rm") on key, one that does not exist: the monitors answer
// ENOENT once the capability allows it, EACCES when it does not.
func probeConfigKey(ctx context.Context, conn *rados.Conn, command, key string) error {
	cmd, _ := json.Marshal(map[string]string{"prefix": "config-key " + command, "key": key})
	err := do(ctx, func() error {
		_, _, err := conn.MonCommand(cmd)
		return err
	})
	if isErrno(err, syscall.ENOENT) {
		return nil
	}
	return err
}

// probeConfigKeySet checks that the user may write under the monitors'
// config-key prefix of key without writing: the monitors check the
// capability first and then refuse a value over their size limit
// (mon_config_key_max_entry_size, 64 KiB unless raised) with EFBIG.
func probeConfigKeySet(ctx context.Context, conn *rados.Conn, key string) error {
	cmd, _ := json.Marshal(map[string]string{"prefix": "config-key set", "key": key})
	big := make([]byte, 64<<10+1)
	err := do(ctx, func() error {
		_, _, err := conn.MonCommandWithInputBuffer(cmd, big)
		return err
	})
	if isErrno(err, syscall.EFBIG) {
		return nil
	}
	return err
}
