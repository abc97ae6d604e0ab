package sdk

import (
	"io"
	"log/slog"
	"os"
	"time"

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

// hclogTime is how hclog writes @timestamp in JSON, and the only layout
// go-plugin parses: a line whose timestamp it cannot parse is forwarded as
// raw text at debug level, its level and attributes lost.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

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
				if t, ok := a.Value.Any().(time.Time); ok {
					a.Value = slog.StringValue(t.Format(hclogTime))
				}
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				level, _ := a.Value.Any().(slog.Level)
				switch {
				case level < slog.LevelInfo:
					a.Value = slog.StringValue("debug")
				case level < slog.LevelWarn:
					a.Value = slog.StringValue("info")
				case level < slog.LevelError:
					a.Value = slog.StringValue("warn")
				default:
					a.Value = slog.StringValue("error")
				}
			}
			return a
		},
	}))
}
