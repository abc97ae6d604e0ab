package porttest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cdmdr/mirror/ports"
)

// ElectionHarness makes daemons that elect leaders in one shared store.
type ElectionHarness interface {
	// NewDaemon returns the election of a new daemon with its own session
	// and the given identity. The harness ends the session when t ends.
	NewDaemon(t *testing.T, id string) ports.Election

	// Expire ends e's session as if its daemon had died: its leader keys
	// vanish. It returns once the store has dropped them.
	Expire(t *testing.T, e ports.Election)

	// KV returns a client of the store the daemons share.
	KV(t *testing.T) ports.KV
}

// RunElection checks that the elections h makes honour the ports.Election
// and ports.Leadership contracts.
func RunElection(t *testing.T, h ElectionHarness) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, h ElectionHarness)
	}{
		{"OneLeaderAmongConcurrentDaemons", testElectionOneLeader},
		{"CampaignAgain", testElectionCampaignAgain},
		{"FencedWrites", testElectionFencedWrites},
		{"GuardedDelete", testElectionGuardedDelete},
		{"ResignLetsAnotherWin", testElectionResign},
		{"ExpireLosesEveryLeadership", testElectionExpire},
		{"StaleLeaderCannotWrite", testElectionStaleLeader},
		{"LeaderKeyDeleted", testElectionKeyDeleted},
		{"KeysAreIndependent", testElectionIndependentKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// daemons makes n daemons with identities unique to the test.
func daemons(t *testing.T, h ElectionHarness, n int) []ports.Election {
	t.Helper()
	out := make([]ports.Election, n)
	for i := range out {
		out[i] = h.NewDaemon(t, fmt.Sprintf("%s-d%d", name(t), i))
	}
	return out
}

func campaign(t *testing.T, e ports.Election, key string) ports.Leadership {
	t.Helper()
	l, err := e.TryCampaign(t.Context(), key)
	if err != nil {
		t.Fatalf("%s: TryCampaign(%q): %v", e.Identity(), key, err)
	}
	if l.Key() != key {
		t.Fatalf("leadership Key() = %q, want %q", l.Key(), key)
	}
	return l
}

func wantElsewhere(t *testing.T, e ports.Election, key string) {
	t.Helper()
	if l, err := e.TryCampaign(t.Context(), key); !errors.Is(err, ports.ErrLeaderElsewhere) {
		t.Fatalf("%s: TryCampaign(%q) = %v, %v; want ErrLeaderElsewhere", e.Identity(), key, l, err)
	}
}

func wantLeaderKey(t *testing.T, kv ports.KV, key, identity string) {
	t.Helper()
	got, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("leader key %q: %v", key, err)
	}
	if string(got.Value) != identity {
		t.Fatalf("leader key %q holds %q, want %q", key, got.Value, identity)
	}
}

func testElectionOneLeader(t *testing.T, h ElectionHarness) {
	ds := daemons(t, h, 3)
	kv := h.KV(t)
	for round := range 5 {
		key := fmt.Sprintf("%sleader/%d", prefix(t), round)
		var (
			mu      sync.Mutex
			winners []int
			wg      sync.WaitGroup
		)
		start := make(chan struct{})
		for i, d := range ds {
			wg.Go(func() {
				<-start
				l, err := d.TryCampaign(t.Context(), key)
				switch {
				case err == nil && l != nil:
					mu.Lock()
					winners = append(winners, i)
					mu.Unlock()
				case !errors.Is(err, ports.ErrLeaderElsewhere):
					t.Errorf("%s: TryCampaign = %v, want nil or ErrLeaderElsewhere", d.Identity(), err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d leaders %v, want exactly one", round, len(winners), winners)
		}
		wantLeaderKey(t, kv, key, ds[winners[0]].Identity())
	}
}

func testElectionCampaignAgain(t *testing.T, h ElectionHarness) {
	ds := daemons(t, h, 2)
	key := prefix(t) + "leader"
	l1 := campaign(t, ds[0], key)
	l2 := campaign(t, ds[0], key)
	if isClosed(l1.Lost()) || isClosed(l2.Lost()) {
		t.Fatal("campaigning again lost the leadership")
	}
	wantElsewhere(t, ds[1], key)
	// The leadership returned the second time writes too.
	if _, err := l2.Put(t.Context(), prefix(t)+"data", []byte("v")); err != nil {
		t.Fatalf("Put through the second leadership: %v", err)
	}
	wantLeaderKey(t, h.KV(t), key, ds[0].Identity())
}

func testElectionFencedWrites(t *testing.T, h ElectionHarness) {
	ctx, p := t.Context(), prefix(t)
	d := daemons(t, h, 1)[0]
	kv := h.KV(t)
	l := campaign(t, d, p+"leader")
	var last int64
	for _, k := range []string{"data/a", "data/b/1", "data/b/2", "data/bc", "other"} {
		rev, err := l.Put(ctx, p+k, []byte(k))
		if err != nil {
			t.Fatalf("fenced Put(%s): %v", k, err)
		}
		// A cache holds its own write by this revision until the watch
		// brings it back: it must be the key's ModRevision.
		if got := mustGet(t, kv, p+k); got.ModRevision != rev {
			t.Fatalf("fenced Put(%s) returned revision %d, the key's ModRevision is %d", k, rev, got.ModRevision)
		}
		if rev <= last {
			t.Fatalf("fenced Put(%s) returned revision %d, not after the previous write's %d", k, rev, last)
		}
		last = rev
	}
	if got := mustGet(t, kv, p+"data/a"); string(got.Value) != "data/a" {
		t.Fatalf("fenced Put wrote %q", got.Value)
	}
	rev, err := l.Delete(ctx, []string{p + "data/a", p + "missing"}, []string{p + "data/b/", p + "nothing/"})
	if err != nil {
		t.Fatalf("fenced Delete: %v", err)
	}
	if rev <= last {
		t.Fatalf("fenced Delete returned revision %d, not after the last Put's %d", rev, last)
	}
	if got := listKeys(t, kv, p); !slices.Equal(got, []string{"data/bc", "leader", "other"}) {
		t.Fatalf("keys after fenced Delete = %q, want data/bc, leader, other", got)
	}
	if isClosed(l.Lost()) {
		t.Fatal("fenced writes lost the leadership")
	}
}

// testElectionGuardedDelete: a Delete guarded on a key another writer
// changed meanwhile (an operation written while the reconcile that acted
// on the previous one ends the resource) removes nothing and says
// ErrConflict, not ErrNotLeader: the lead is intact.
func testElectionGuardedDelete(t *testing.T, h ElectionHarness) {
	ctx, p := t.Context(), prefix(t)
	ds := daemons(t, h, 2)
	kv := h.KV(t)
	key, res := p+"leader", p+"res"
	op := res + "/operation"
	l := campaign(t, ds[0], key)
	for _, k := range []string{res, op, res + "/status"} {
		if _, err := kv.Put(ctx, k, []byte("stop")); err != nil { // the DR manager's writes
			t.Fatal(err)
		}
	}
	read := mustGet(t, kv, op).ModRevision
	if _, err := kv.Put(ctx, op, []byte("stop_and_delete")); err != nil {
		t.Fatal(err)
	}
	all := []string{"leader", "res", "res/operation", "res/status"}
	guard := ports.Guard{Key: op, ModRevision: read}
	if _, err := l.Delete(ctx, []string{res}, []string{res + "/"}, guard); !errors.Is(err, ports.ErrConflict) || errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("Delete guarded on a changed key = %v, want ErrConflict only", err)
	}
	if got := listKeys(t, kv, p); !slices.Equal(got, all) {
		t.Fatalf("keys after a refused guarded Delete = %q, want %q", got, all)
	}
	if isClosed(l.Lost()) {
		t.Fatal("a failed guard lost the leadership")
	}
	if _, err := l.Put(ctx, res+"/status", []byte("stopping")); err != nil {
		t.Fatalf("Put after a failed guard: %v", err)
	}
	// A guarded key deleted since fails its guard too.
	if _, err := l.Delete(ctx, []string{res}, nil, ports.Guard{Key: p + "gone", ModRevision: read}); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("Delete guarded on a missing key = %v, want ErrConflict", err)
	}

	now := ports.Guard{Key: op, ModRevision: mustGet(t, kv, op).ModRevision}
	// A lost lead is reported as such, whatever the guards say.
	h.Expire(t, ds[0])
	if _, err := l.Delete(ctx, []string{res}, []string{res + "/"}, now); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("stale leader's guarded Delete = %v, want ErrNotLeader", err)
	}
	if _, err := l.Delete(ctx, []string{res}, []string{res + "/"}, guard); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("stale leader's Delete with a failing guard = %v, want ErrNotLeader", err)
	}
	l2 := campaign(t, ds[1], key)
	if _, err := l2.Delete(ctx, []string{res}, []string{res + "/"}, now); err != nil {
		t.Fatalf("Delete with guards that hold: %v", err)
	}
	if got := listKeys(t, kv, p); !slices.Equal(got, []string{"leader"}) {
		t.Fatalf("keys after a guarded Delete = %q, want the leader key only", got)
	}
}

func testElectionResign(t *testing.T, h ElectionHarness) {
	ctx, p := t.Context(), prefix(t)
	ds := daemons(t, h, 2)
	kv := h.KV(t)
	key := p + "leader"
	l := campaign(t, ds[0], key)
	wantElsewhere(t, ds[1], key)
	if err := l.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	waitClosed(t, l.Lost(), "Lost after Resign")
	if _, err := kv.Get(ctx, key); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("leader key after Resign: %v, want ErrNotFound", err)
	}
	if _, err := l.Put(ctx, p+"data", []byte("v")); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("Put after Resign = %v, want ErrNotLeader", err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatalf("Resign of a lost leadership = %v, want nil", err)
	}
	l2 := campaign(t, ds[1], key)
	wantLeaderKey(t, kv, key, ds[1].Identity())
	wantElsewhere(t, ds[0], key)
	// The old leadership's late Resign must not remove the new leader's key.
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	wantLeaderKey(t, kv, key, ds[1].Identity())
	if isClosed(l2.Lost()) {
		t.Fatal("the new leader lost its lead to an old Resign")
	}
}

func testElectionExpire(t *testing.T, h ElectionHarness) {
	ctx, p := t.Context(), prefix(t)
	ds := daemons(t, h, 2)
	kv := h.KV(t)
	keys := []string{p + "leader/1", p + "leader/2"}
	var ls []ports.Leadership
	for _, k := range keys {
		ls = append(ls, campaign(t, ds[0], k))
	}
	other := campaign(t, ds[1], p+"leader/other")

	h.Expire(t, ds[0])
	for i, l := range ls {
		waitClosed(t, l.Lost(), fmt.Sprintf("Lost of %s after Expire", keys[i]))
		if _, err := l.Put(ctx, p+"data", []byte("v")); !errors.Is(err, ports.ErrNotLeader) {
			t.Fatalf("Put after Expire = %v, want ErrNotLeader", err)
		}
		if _, err := l.Delete(ctx, []string{keys[i]}, nil); !errors.Is(err, ports.ErrNotLeader) {
			t.Fatalf("Delete after Expire = %v, want ErrNotLeader", err)
		}
	}
	if _, err := kv.Get(ctx, p+"data"); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("an expired leader wrote: %v", err)
	}
	if isClosed(other.Lost()) {
		t.Fatal("another daemon's leadership was lost by the expiry")
	}
	for _, k := range keys {
		campaign(t, ds[1], k)
		wantLeaderKey(t, kv, k, ds[1].Identity())
	}
}

func testElectionStaleLeader(t *testing.T, h ElectionHarness) {
	ctx, p := t.Context(), prefix(t)
	ds := daemons(t, h, 2)
	kv := h.KV(t)
	key, data := p+"leader", p+"data/"
	old := campaign(t, ds[0], key)
	if _, err := old.Put(ctx, data+"k", []byte("old")); err != nil {
		t.Fatal(err)
	}
	h.Expire(t, ds[0])
	nl := campaign(t, ds[1], key)
	if _, err := nl.Put(ctx, data+"k", []byte("new")); err != nil {
		t.Fatal(err)
	}
	// The old leader may not have noticed yet; its writes must bounce
	// whether or not it has.
	if _, err := old.Put(ctx, data+"k", []byte("stale")); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("stale leader's Put = %v, want ErrNotLeader", err)
	}
	if _, err := old.Delete(ctx, []string{data + "k"}, []string{data}); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("stale leader's Delete = %v, want ErrNotLeader", err)
	}
	if got := mustGet(t, kv, data+"k"); string(got.Value) != "new" {
		t.Fatalf("value %q after a stale write, want the new leader's", got.Value)
	}
	// Nor can the old daemon campaign its way back while the new one leads.
	wantElsewhere(t, ds[0], key)
	if isClosed(nl.Lost()) {
		t.Fatal("new leader lost its lead")
	}
}

func testElectionKeyDeleted(t *testing.T, h ElectionHarness) {
	ctx, p := t.Context(), prefix(t)
	ds := daemons(t, h, 2)
	kv := h.KV(t)
	key := p + "leader"
	l := campaign(t, ds[0], key)
	if err := kv.Delete(ctx, key); err != nil { // an operator's manual reset
		t.Fatal(err)
	}
	waitClosed(t, l.Lost(), "Lost after the leader key was deleted")
	if _, err := l.Put(ctx, p+"data", []byte("v")); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("Put after the leader key was deleted = %v, want ErrNotLeader", err)
	}
	campaign(t, ds[1], key)
	wantLeaderKey(t, kv, key, ds[1].Identity())
}

func testElectionIndependentKeys(t *testing.T, h ElectionHarness) {
	ctx, p := t.Context(), prefix(t)
	ds := daemons(t, h, 2)
	la := campaign(t, ds[0], p+"leader/a")
	lb := campaign(t, ds[1], p+"leader/b")
	la2 := campaign(t, ds[0], p+"leader/a2")
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, la.Lost(), "Lost after Resign")
	if isClosed(lb.Lost()) || isClosed(la2.Lost()) {
		t.Fatal("resigning one key lost another")
	}
	if _, err := la2.Put(ctx, p+"data", []byte("v")); err != nil {
		t.Fatalf("Put under a still-held key: %v", err)
	}
	if _, err := lb.Put(ctx, p+"data", []byte("w")); err != nil {
		t.Fatalf("Put under another daemon's key: %v", err)
	}
}

func listKeys(t *testing.T, kv ports.KV, p string) []string {
	t.Helper()
	kvs, _, err := kv.List(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range kvs {
		keys = append(keys, e.Key[len(p):])
	}
	return keys
}
