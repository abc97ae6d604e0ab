package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/core"
)

// opOptions are the flags of volume and environment operations.
type opOptions struct {
	wait    bool
	timeout time.Duration
	force   bool
	env     bool // environment operations take --force
}

func (o *opOptions) flags(fs *flag.FlagSet) {
	fs.BoolVar(&o.wait, "wait", false, "wait until the operation reached its end state (exit 0), an error (1), a refusal (4) or --timeout (3)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long --wait waits")
	if o.env {
		fs.BoolVar(&o.force, "force", false, "with stop: the forced stop, tearing the pairing down even while the storages replicate volumes of it (docs/contract.md §3.1)")
	}
}

// refusedError is a move the state rules do not allow (exit 4).
type refusedError struct{ error }

// timeoutError is --wait running out of time (exit 3).
type timeoutError struct{ error }

// runVolumeOp is `mirrorctl volume OPERATION NAME...`.
func (e *env) runVolumeOp(ctx context.Context, args []string) int {
	o := opOptions{}
	cfg, rest, err := e.load("volume", args, o.flags)
	var op core.Operation
	if err == nil {
		if len(rest) < 2 {
			err = usageError{errors.New("want: volume start|pause|resume|stop|stop_and_delete|destroy NAME...")}
		} else if op, err = core.ParseVolumeOperation(rest[0]); err != nil {
			err = usageError{err}
		}
	}
	var refs []core.VolumeRef
	for _, n := range rest[min(1, len(rest)):] {
		if err != nil {
			break
		}
		p, perr := parseName(n)
		if perr == nil && p.Kind != core.KindVolume {
			perr = usageError{fmt.Errorf("name %q: want a volume, storage.{s}.{t}/volume.{id}", n)}
		}
		err = perr
		refs = append(refs, p.Volume)
	}
	if err != nil {
		return e.exitFor("volume", err)
	}
	s, closeStore, err := connect(ctx, cfg)
	if err != nil {
		return e.exitFor("volume", err)
	}
	defer closeStore()
	return e.operate(ctx, s, "volume", o, len(refs), func(i int) target {
		return volumeTarget(refs[i], op)
	})
}

// runEnvironmentOp is `mirrorctl environment start|stop NAME...`.
func (e *env) runEnvironmentOp(ctx context.Context, args []string) int {
	o := opOptions{env: true}
	cfg, rest, err := e.load("environment", args, o.flags)
	var op core.Operation
	if err == nil {
		if len(rest) < 2 {
			err = usageError{errors.New("want: environment start|stop NAME...")}
		} else if op, err = core.ParseEnvironmentOperation(rest[0]); err != nil {
			err = usageError{err}
		} else if o.force && op != core.OpStop {
			err = usageError{errors.New("--force goes with stop only")}
		}
	}
	var ids []core.EnvironmentID
	for _, n := range rest[min(1, len(rest)):] {
		if err != nil {
			break
		}
		p, perr := parseName(n)
		if perr == nil && p.Kind != core.KindEnvironment {
			perr = usageError{fmt.Errorf("name %q: want an environment, storage.{s}.{t}", n)}
		}
		err = perr
		ids = append(ids, p.Env)
	}
	if err != nil {
		return e.exitFor("environment", err)
	}
	s, closeStore, err := connect(ctx, cfg)
	if err != nil {
		return e.exitFor("environment", err)
	}
	defer closeStore()
	return e.operate(ctx, s, "environment", o, len(ids), func(i int) target {
		return environmentTarget(ids[i], core.OperationRecord{Operation: op, Force: o.force})
	})
}

// target is one environment or volume an operation is asked of: its
// keys, the operation record, the check of the state rules and what
// --wait waits for.
type target struct {
	name      string
	subject   string // core.SubjectVolume or core.SubjectEnvironment
	record    string
	opKey     string
	statusKey string
	op        core.OperationRecord
	// check returns why the rules refuse the operation from st (nil: no
	// status), or "" when they allow it.
	check func(st *core.Status) string
	// end is the state --wait waits for; "" when the operation ends by
	// deleting the keys.
	end core.State
}

func volumeTarget(ref core.VolumeRef, op core.Operation) target {
	t := target{name: volumeName(ref), subject: core.SubjectVolume, record: core.VolumeKey(ref),
		opKey: core.VolumeOperationKey(ref), statusKey: core.VolumeStatusKey(ref), op: core.OperationRecord{Operation: op}}
	t.check = func(st *core.Status) string {
		cur := core.StateNone
		if st != nil {
			cur = st.StateCode
		}
		if core.CanStartFrom(op, cur) {
			return ""
		}
		// The daemon's own words for the refusal it would write.
		if p := core.PlanVolume(core.VolumeInput{Operation: op, Status: st}); p.Write != nil && p.Write.ErrorReason != nil {
			return p.Write.ErrorReason.Contents
		}
		return fmt.Sprintf("operation %s is not allowed while the volume is %s", op, cur)
	}
	switch op {
	case core.OpStart, core.OpResume:
		t.end = core.StateMirroring
	case core.OpPause:
		t.end = core.StatePaused
	}
	return t
}

// environmentTarget: environments have no refusals (docs/contract.md
// §3.2: start and stop may begin from every state).
func environmentTarget(id core.EnvironmentID, rec core.OperationRecord) target {
	t := target{name: id.String(), subject: core.SubjectEnvironment, record: core.EnvironmentKey(id),
		opKey: core.EnvironmentOperationKey(id), statusKey: core.EnvironmentStatusKey(id), op: rec,
		check: func(*core.Status) string { return "" }}
	if rec.Operation == core.OpStart {
		t.end = core.StateMirroring
	}
	return t
}

// operate asks each target for its operation, then waits for all of
// them if asked. The exit code is the worst of them.
func (e *env) operate(ctx context.Context, s *store, kind string, o opOptions, n int, at func(int) target) int {
	code := exitOK
	var asked []target
	var revs []int64
	for i := range n {
		t := at(i)
		rev, said, err := s.ask(ctx, t)
		if err != nil {
			code = max(code, e.exitFor(kind+" "+string(t.op.Operation), fmt.Errorf("%s: %w", t.name, err)))
			continue
		}
		fmt.Fprintf(e.stdout, "%s %s: %s\n", t.subject, t.name, said)
		asked, revs = append(asked, t), append(revs, rev)
	}
	if !o.wait {
		return code
	}
	deadline := time.Now().Add(o.timeout)
	for i, t := range asked {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		err := e.wait(wctx, s, t, revs[i], o.timeout)
		cancel()
		if err != nil {
			code = max(code, e.exitFor(kind+" "+string(t.op.Operation), fmt.Errorf("%s: %w", t.name, err)))
		}
	}
	return code
}

// ask checks the operation against the state rules and writes it, in
// one transaction that holds only if the record and the status are
// still those checked. It returns the revision the operation stands at
// and what it did, in words.
func (s *store) ask(ctx context.Context, t target) (int64, string, error) {
	value, err := json.Marshal(t.op)
	if err != nil {
		return 0, "", err
	}
	for range 5 {
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Txn(cctx).Then(clientv3.OpGet(t.record), clientv3.OpGet(t.statusKey), clientv3.OpGet(t.opKey)).Commit()
		cancel()
		if err != nil {
			return 0, "", s.explain(err)
		}
		rec, stKV, opKV := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs, resp.Responses[2].GetResponseRange().Kvs
		if len(rec) == 0 {
			return 0, "", fmt.Errorf("no record at %s: nothing written", t.record)
		}
		var st *core.Status
		var stRev int64
		if len(stKV) > 0 {
			x, err := core.DecodeStatus(stKV[0].Value)
			if err != nil {
				return 0, "", fmt.Errorf("status unreadable, so the rules cannot be checked (nothing written): %w", err)
			}
			st, stRev = &x, stKV[0].ModRevision
		}
		if why := t.check(st); why != "" {
			return 0, "", refusedError{fmt.Errorf("refused by the state rules, nothing written: %s", why)}
		}
		if len(opKV) > 0 && string(opKV[0].Value) == string(value) {
			// Already asked: writing it again changes nothing.
			return resp.Header.Revision, fmt.Sprintf("%s already asked (%s), nothing written", t.op.Operation, stateWord(st)), nil
		}
		cctx, cancel = s.call(ctx)
		put, err := s.cli.Txn(cctx).If(
			clientv3.Compare(clientv3.ModRevision(t.record), "=", rec[0].ModRevision),
			clientv3.Compare(clientv3.ModRevision(t.statusKey), "=", stRev),
		).Then(clientv3.OpPut(t.opKey, string(value))).Commit()
		cancel()
		if err != nil {
			return 0, "", s.explain(err)
		}
		if put.Succeeded {
			return put.Header.Revision, fmt.Sprintf("%s written (%s)", value, stateWord(st)), nil
		}
		// The status changed between the check and the write: check again.
	}
	return 0, "", errors.New("the status keeps changing; nothing written, try again")
}

// wait follows the target from rev until the operation is over: its end
// state, its keys deleted, an error or a refusal under it, or ctx's end.
func (e *env) wait(ctx context.Context, s *store, t target, rev int64, timeout time.Duration) error {
	last := ""
	for {
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Txn(cctx).Then(clientv3.OpGet(t.record), clientv3.OpGet(t.statusKey)).Commit()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return timeoutError{fmt.Errorf("not done within %s (last: %s)", timeout, dash(last))}
			}
			return s.explain(err)
		}
		rec, stKV := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		if len(rec) == 0 {
			if t.end == "" {
				fmt.Fprintf(e.stderr, "%s %s: %s done, keys deleted\n", t.subject, t.name, t.op.Operation)
				return nil
			}
			return fmt.Errorf("the keys were deleted before %s reached %s", t.op.Operation, t.end)
		}
		if len(stKV) > 0 {
			st, err := core.DecodeStatus(stKV[0].Value)
			if err != nil {
				return fmt.Errorf("status unreadable: %w", err)
			}
			now := describe(st)
			if now != last {
				fmt.Fprintf(e.stderr, "%s %s: %s\n", t.subject, t.name, now)
				last = now
			}
			if st.ErrorReason != nil && st.ErrorReason.Code == core.Code(t.subject, "refused", "operation", string(t.op.Operation)) {
				return refusedError{fmt.Errorf("refused by the daemon: %s", st.ErrorReason.Contents)}
			}
			if st.Operation == t.op.Operation {
				switch {
				case t.end != "" && st.StateCode == t.end:
					return nil
				case st.StateCode == core.StateError:
					return fmt.Errorf("error under %s (the daemon retries): %s", t.op.Operation, describe(st))
				}
			}
		}
		if err := s.waitKeys(ctx, resp.Header.Revision, t.record, t.statusKey); err != nil {
			if ctx.Err() != nil {
				return timeoutError{fmt.Errorf("not done within %s (last: %s)", timeout, dash(last))}
			}
			return err
		}
	}
}

// stateWord says the state an operation was asked in.
func stateWord(st *core.Status) string {
	if st == nil {
		return "no status yet"
	}
	return "was " + string(st.StateCode)
}

// describe is a status in one line: state, progress, reason.
func describe(st core.Status) string {
	s := string(st.StateCode)
	if st.Progress != nil {
		s += fmt.Sprintf(" %d%%", *st.Progress)
	}
	if st.ErrorReason != nil {
		s += " (" + st.ErrorReason.Code + ": " + st.ErrorReason.Contents + ")"
	}
	return s
}

// waitKeys returns once one of keys changed after rev, or ctx ends.
func (s *store) waitKeys(ctx context.Context, rev int64, keys ...string) error {
	return s.firstChange(ctx, rev, false, keys...)
}
