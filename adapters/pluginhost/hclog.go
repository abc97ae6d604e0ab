package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sort"
	"strings"
	"sync"

	hclog "github.com/hashicorp/go-hclog"
)

// hcLogger is the hclog.Logger go-plugin wants, forwarding to slog. It
// carries what go-plugin says about a plugin and, named after the plugin's
// file, the plugin's own log lines read from its stderr. Levels follow
// slog's: trace is below debug.
type hcLogger struct {
	log  *slog.Logger
	name string
	args []any // implied arguments, as given to With
}

var _ hclog.Logger = (*hcLogger)(nil)

// levelTrace is where hclog's trace goes in slog: below debug.
const levelTrace = slog.LevelDebug - 4

// newHCLogger returns an hclog.Logger writing to log.
func newHCLogger(log *slog.Logger) hclog.Logger { return &hcLogger{log: log} }

func toSlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// attrs turns hclog's alternating keys and values into slog attributes:
// hclog's "error" key becomes "err", as everywhere else in the daemon.
func attrs(kvs []any) []any {
	out := make([]any, 0, len(kvs)/2+1)
	for i := 0; i < len(kvs); i += 2 {
		if i+1 == len(kvs) {
			out = append(out, slog.Any("EXTRA_VALUE_AT_END", kvs[i]))
			break
		}
		key, ok := kvs[i].(string)
		if !ok {
			key = fmt.Sprint(kvs[i])
		}
		if key == "error" {
			key = "err"
		}
		out = append(out, slog.Any(key, kvs[i+1]))
	}
	return out
}

func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lvl := toSlogLevel(level)
	ctx := context.Background()
	if !l.log.Enabled(ctx, lvl) {
		return
	}
	a := attrs(append(append([]any(nil), l.args...), args...))
	if l.name != "" {
		a = append(a, slog.String("logger", l.name))
	}
	l.log.Log(ctx, lvl, msg, a...)
}

func (l *hcLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hcLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hcLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hcLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hcLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *hcLogger) enabled(level hclog.Level) bool {
	return l.log.Enabled(context.Background(), toSlogLevel(level))
}

func (l *hcLogger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *hcLogger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *hcLogger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *hcLogger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *hcLogger) IsError() bool { return l.enabled(hclog.Error) }

func (l *hcLogger) ImpliedArgs() []any { return append([]any(nil), l.args...) }

func (l *hcLogger) With(args ...any) hclog.Logger {
	c := *l
	c.args = append(append([]any(nil), l.args...), args...)
	return &c
}

func (l *hcLogger) Name() string { return l.name }

func (l *hcLogger) Named(name string) hclog.Logger {
	c := *l
	if c.name == "" {
		c.name = name
	} else {
		c.name += "." + name
	}
	return &c
}

func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel does nothing: the slog handler, chosen by main, filters.
func (l *hcLogger) SetLevel(hclog.Level) {}

// GetLevel is the lowest level the slog handler takes (go-plugin skips
// parsing plugin log lines below it).
func (l *hcLogger) GetLevel() hclog.Level {
	for _, lvl := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if l.enabled(lvl) {
			return lvl
		}
	}
	return hclog.Off
}

func (l *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	lvl := slog.LevelInfo
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		lvl = toSlogLevel(opts.ForceLevel)
	}
	return slog.NewLogLogger(l.log.Handler(), lvl)
}

func (l *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return l.StandardLogger(opts).Writer()
}

// lineWriter forwards what a plugin writes to its stderr or stdout once
// served (go-plugin carries it over gRPC, not through the pipe it reads
// before) into the log, a line at a time: hclog's JSON lines (the SDK's
// Logger writes them) at their level with their attributes, other lines
// as they are at level.
type lineWriter struct {
	log   hclog.Logger
	level hclog.Level
	mu    sync.Mutex
	buf   []byte
}

// maxLine caps a line kept waiting for its end.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLine {
				w.line(w.buf)
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) line(b []byte) {
	b = bytes.TrimRight(b, "\r")
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	var entry map[string]any
	if b[0] != '{' || json.Unmarshal(b, &entry) != nil {
		w.log.Log(w.level, string(b))
		return
	}
	level := hclog.LevelFromString(fmt.Sprint(entry["@level"]))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	msg, _ := entry["@message"].(string)
	keys := make([]string, 0, len(entry))
	for k := range entry {
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys)+2)
	for _, k := range keys {
		args = append(args, k, entry[k])
	}
	if ts, ok := entry["@timestamp"]; ok {
		args = append(args, "timestamp", ts)
	}
	w.log.Log(level, msg, args...)
}

// tailWriter keeps the last line a plugin wrote to stderr before it was
// served, for the error that refuses it.
type tailWriter struct {
	mu   sync.Mutex
	last string
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := strings.TrimSpace(string(p)); s != "" {
		w.last = s
	}
	return len(p), nil
}

// lastLine is the last non-empty line written, shortened.
func (w *tailWriter) lastLine() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.last) > 200 {
		return w.last[:200] + "..."
	}
	return w.last
}
