package fake_test

import (
	"errors"
	"testing"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/ports/porttest"
)

type electionHarness struct{ kv *fake.KV }

func (h electionHarness) NewDaemon(_ *testing.T, id string) ports.Election {
	return fake.NewElection(h.kv, id)
}

func (h electionHarness) Expire(_ *testing.T, e ports.Election) { e.(*fake.Election).Expire() }

func (h electionHarness) KV(*testing.T) ports.KV { return h.kv }

func TestElectionConformance(t *testing.T) {
	porttest.RunElection(t, electionHarness{kv: fake.NewKV()})
}

// A write that passed every check in the caller but reaches the store after
// the session expired and another daemon took over must bounce.
func TestElectionFencedWriteRacesExpiry(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	a, b := fake.NewElection(kv, "a"), fake.NewElection(kv, "b")
	la, err := a.TryCampaign(ctx, "leader/v1")
	if err != nil {
		t.Fatal(err)
	}
	a.BeforeFencedWrite(func() {
		a.Expire()
		lb, err := b.TryCampaign(ctx, "leader/v1")
		if err != nil {
			t.Errorf("b campaign: %v", err)
			return
		}
		if _, err := lb.Put(ctx, "status/v1", []byte("b")); err != nil {
			t.Errorf("b put: %v", err)
		}
	})
	if _, err := la.Put(ctx, "status/v1", []byte("a")); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("stale Put = %v, want ErrNotLeader", err)
	}
	if got := kv.Dump(); got["status/v1"] != "b" || got["leader/v1"] != "b" {
		t.Fatalf("store after the race = %v, want b's writes", got)
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("Lost not closed by Expire")
	}
}

func TestElectionExpireThenCampaignAgain(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	a := fake.NewElection(kv, "a")
	l1, _ := a.TryCampaign(ctx, "leader/x")
	a.Expire()
	if _, ok := kv.Dump()["leader/x"]; ok {
		t.Fatal("Expire left the leader key")
	}
	l2, err := a.TryCampaign(ctx, "leader/x")
	if err != nil || l2 == l1 {
		t.Fatalf("campaign after Expire = %v, %v; want a fresh leadership", l2, err)
	}
	if _, err := l2.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := l1.Put(ctx, "k", []byte("old")); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("old leadership Put = %v, want ErrNotLeader", err)
	}
}

// A restarted daemon (a new Election with the same identity) takes over the
// leader key it left behind.
func TestElectionSameIdentityTakesOver(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	if _, err := fake.NewElection(kv, "a").TryCampaign(ctx, "leader/x"); err != nil {
		t.Fatal(err)
	}
	l, err := fake.NewElection(kv, "a").TryCampaign(ctx, "leader/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
}

func TestElectionFailure(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	a := fake.NewElection(kv, "a")
	l, _ := a.TryCampaign(ctx, "leader/x")
	boom := errors.New("boom")
	kv.SetFailure(boom)
	if _, err := l.Put(ctx, "k", []byte("v")); !errors.Is(err, boom) {
		t.Fatalf("Put with a failing store = %v, want boom", err)
	}
	if _, err := fake.NewElection(kv, "b").TryCampaign(ctx, "leader/y"); !errors.Is(err, boom) {
		t.Fatalf("TryCampaign with a failing store = %v, want boom", err)
	}
	a.Expire() // works even while the store fails requests
	select {
	case <-l.Lost():
	default:
		t.Fatal("Lost not closed")
	}
}
