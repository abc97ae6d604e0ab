package sdk

import (
	"io"
	"log/slog"
	"os"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
)

// Serve serves b as a mirror storage plugin until the daemon stops it. A
// plugin's main calls it and nothing else:
//
//	func main() { sdk.Serve(mybackend.New(sdk.Logger())) }
//
// Run by hand (not by mirrord) it prints that it is a plugin and exits.
func Serve(b Backend) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: PluginSets(b),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Trace}),
	})
}

// Logger returns the logger a plugin should use: it writes JSON lines on
// stderr that the daemon reads and forwards into its own log, with the
// plugin's name attached. Never log storage metadata: it holds keyrings.
func Logger() *slog.Logger { return newLogger(os.Stderr) }

func newLogger(w io.Writer) *slog.Logger {
	// go-plugin parses hclog's JSON: @level, @message, @timestamp.
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				switch a.Value.Any().(slog.Level) {
				case slog.LevelDebug:
					a.Value = slog.StringValue("debug")
				case slog.LevelWarn:
					a.Value = slog.StringValue("warn")
				case slog.LevelError:
					a.Value = slog.StringValue("error")
				default:
					a.Value = slog.StringValue("info")
				}
			}
			return a
		},
	}))
}
