package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"sort"
	"strconv"
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
	// file is the plugin's file name. The logger named after it carries
	// the plugin's own lines; the others carry go-plugin's, whose
	// "plugin" and "path" are the file's path: logged as plugin_path, as
	// "plugin" is the file's name in every record of the host.
	file string
}

var _ hclog.Logger = (*hcLogger)(nil)

// levelTrace is where hclog's trace goes in slog: below debug.
const levelTrace = slog.LevelDebug - 4

// newHCLogger returns an hclog.Logger writing to log, for the plugin
// whose file name is file.
func newHCLogger(log *slog.Logger, file string) hclog.Logger {
	return &hcLogger{log: log, file: file}
}

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
// hclog's "error" key becomes "err", as everywhere else in the daemon;
// in go-plugin's own records (not the plugin's), "plugin" and "path"
// become "plugin_path"; numbers read from JSON are integers again when
// they were (jsonValue).
func attrs(kvs []any, goPlugins bool) []any {
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
		switch {
		case key == "error":
			key = "err"
		case goPlugins && (key == "plugin" || key == "path"):
			key = "plugin_path"
		}
		out = append(out, slog.Any(key, jsonValue(kvs[i+1])))
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
	pluginsOwn := l.file != "" && l.name == l.file
	a := attrs(append(append([]any(nil), l.args...), args...), !pluginsOwn)
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
	entry, ok := decodeJSONLine(b)
	if !ok {
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

// decodeJSONLine reads one JSON object, its numbers kept as written
// (json.Number, which jsonValue turns into int64 or float64).
func decodeJSONLine(b []byte) (map[string]any, bool) {
	if b[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var entry map[string]any
	if dec.Decode(&entry) != nil || dec.Decode(new(any)) != io.EOF {
		return nil, false
	}
	return entry, true
}

// maxExactInt is the largest integer every float64 below it holds
// exactly: 2^53.
const maxExactInt = 1 << 53

// jsonValue is v as it should be logged when it was read from JSON: a
// number written as an integer is an int64, not the float64 that would
// print as 8.388608e+06. lineWriter's numbers are json.Number, exact;
// go-plugin parses the lines a plugin writes before it is served into
// float64, so an integral one up to 2^53 (exact, hence written as that
// integer) is taken back as int64, a larger one stays a float. Values of
// other types are returned as they are.
func jsonValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return jsonValue(f)
		}
		return string(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= maxExactInt {
			return int64(x)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	}
	return v
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
