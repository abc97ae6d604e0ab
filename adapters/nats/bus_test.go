package nats_test

import (
	"strings"
	"testing"

	mnats "github.com/cdmdr/mirror/adapters/nats"
	"github.com/cdmdr/mirror/adapters/nats/natstest"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/ports/porttest"
)

// The whole contract holds in JetStream mode.
func TestBusConformanceJetStream(t *testing.T) {
	srv := natstest.Start(t, true)
	b := newBus(t, testConfig(srv.URL()))
	if b.Mode() != mnats.ModeJetStream {
		t.Fatalf("mode %s, want jetstream", b.Mode())
	}
	porttest.RunBus(t, func(*testing.T) ports.Bus { return b })
}

// coreCannot are the suite's tests core NATS fails by design: a queue
// group keeps no backlog and cannot redeliver.
var coreCannot = []string{"DurableKeepsBacklog", "DurableRedeliversOnError", "StopKeepsUnacknowledged"}

// Without JetStream everything else in the contract holds: delivery,
// fan-out, one delivery per durable name, Stop.
func TestBusConformanceCore(t *testing.T) {
	for _, tc := range []struct {
		name      string
		jetstream bool
		mode      string
	}{
		{"NoJetStream", false, mnats.ModeAuto},
		{"ModeCoreOnJetStream", true, mnats.ModeCore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Start(t, tc.jetstream)
			cfg := testConfig(srv.URL())
			cfg.Mode = tc.mode
			b := newBus(t, cfg)
			if b.Mode() != mnats.ModeCore {
				t.Fatalf("mode %s, want core", b.Mode())
			}
			porttest.RunBus(t, func(t *testing.T) ports.Bus {
				for _, name := range coreCannot {
					if strings.HasSuffix(t.Name(), "/"+name) {
						t.Skip("core NATS keeps no backlog and cannot redeliver")
					}
				}
				return b
			})
		})
	}
}
