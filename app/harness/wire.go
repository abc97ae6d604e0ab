//go:build wireinject

package harness

import (
	"log/slog"

	"github.com/google/wire"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/ports"
)

// newDaemon assembles one daemon on the shared fakes.
func newDaemon(id Identity, shared *Shared, cfg app.Config, log *slog.Logger) *Daemon {
	wire.Build(
		wire.FieldsOf(new(*Shared), "KV", "Bus", "Backends", "Clock", "Events"),
		provideElection,
		app.NewEngine,
		wire.Bind(new(ports.KV), new(*fake.KV)),
		wire.Bind(new(ports.Election), new(*fake.Election)),
		wire.Bind(new(ports.Bus), new(*fake.Bus)),
		wire.Bind(new(ports.Backends), new(*fake.Backends)),
		wire.Bind(new(ports.EventReporter), new(*fake.Events)),
		wire.Bind(new(ports.Clock), new(*fake.Clock)),
		wire.Struct(new(Daemon), "ID", "Election", "Engine"),
	)
	return nil
}
