package pluginhost

import (
	"errors"
	"log/slog"
	"testing"

	hclog "github.com/hashicorp/go-hclog"
)

func TestHCLogger(t *testing.T) {
	rec := newLogRecorder()
	l := newHCLogger(slog.New(rec).With("plugin", "example"), "example")
	l.Trace("a trace", "k", 1)
	// go-plugin's own records name the plugin by its path; the plugin's
	// keep their keys.
	l.Info("plugin process exited", "plugin", "/plugins/example", "id", 7)
	l.Named("example").Info("the plugin's own", "path", "/a/volume")
	l.With("implied", "yes").Named("sub").Warn("a warning", "error", errors.New("boom"), "odd")
	l.Log(hclog.Off, "never")

	trace := rec.find("a trace")
	if len(trace) != 1 || trace[0]["level"] != "DEBUG-4" || trace[0]["k"] != "1" || trace[0]["plugin"] != "example" {
		t.Errorf("trace = %v", trace)
	}
	warn := rec.find("a warning")
	if len(warn) != 1 {
		t.Fatalf("warning = %v", warn)
	}
	for k, v := range map[string]string{"level": "WARN", "implied": "yes", "logger": "sub", "err": "boom", "EXTRA_VALUE_AT_END": "odd", "plugin": "example"} {
		if warn[0][k] != v {
			t.Errorf("warning %s = %q, want %q (%v)", k, warn[0][k], v, warn[0])
		}
	}
	if r := rec.find("plugin process exited"); len(r) != 1 || r[0]["plugin"] != "example" || r[0]["plugin_path"] != "/plugins/example" {
		t.Errorf("go-plugin's record = %v, want plugin=example plugin_path=/plugins/example", r)
	}
	if r := rec.find("the plugin's own"); len(r) != 1 || r[0]["path"] != "/a/volume" || r[0]["plugin_path"] != "" {
		t.Errorf("the plugin's record = %v, want its path key kept", r)
	}
	if d := rec.duplicateKeys(); len(d) > 0 {
		t.Errorf("records with a key twice: %v", d)
	}
	if len(rec.find("never")) != 0 {
		t.Error("a record at level Off was logged")
	}
	if got := l.Named("a").Named("b").Name(); got != "a.b" {
		t.Errorf("Named twice = %q", got)
	}
	if got := l.Named("a").ResetNamed("c").Name(); got != "c" {
		t.Errorf("ResetNamed = %q", got)
	}
	if got := l.With("x", 1).ImpliedArgs(); len(got) != 2 {
		t.Errorf("ImpliedArgs = %v", got)
	}
	l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Print("from the standard logger")
	if std := rec.find("from the standard logger"); len(std) != 1 || std[0]["level"] != "ERROR" {
		t.Errorf("standard logger record = %v", std)
	}
}

func TestHCLoggerLevel(t *testing.T) {
	l := newHCLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})), "")
	if l.GetLevel() != hclog.Info || l.IsDebug() || l.IsTrace() || !l.IsInfo() || !l.IsError() {
		t.Fatalf("at slog info: GetLevel %v, IsDebug %v, IsInfo %v", l.GetLevel(), l.IsDebug(), l.IsInfo())
	}
	if l := newHCLogger(slog.New(slog.DiscardHandler), ""); l.GetLevel() != hclog.Off {
		t.Fatalf("discarding: GetLevel %v, want Off", l.GetLevel())
	}
}

// TestLineWriter: what a served plugin writes to stderr arrives in pieces;
// hclog JSON lines are logged at their level with their attributes, other
// lines as they are. Integers stay integers, exactly.
func TestLineWriter(t *testing.T) {
	rec := newLogRecorder()
	w := &lineWriter{log: newHCLogger(slog.New(rec), "example").Named("example"), level: hclog.Info}
	for _, p := range []string{
		`{"@level":"warn","@message":"pool almost full","@timestamp":"2026-01-02T03:04:05.000000Z","pool":"vol`,
		"umes\",\"used\":0.9,\"bytes\":8388608,\"big\":9007199254740993,\"ids\":[1,2.5],\"sizes\":{\"a\":2097152}}\nplain text line\n\n",
		`{"not hclog": true`, "\n",
	} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	warn := rec.find("pool almost full")
	if len(warn) != 1 || warn[0]["level"] != "WARN" || warn[0]["pool"] != "volumes" || warn[0]["used"] != "0.9" || warn[0]["logger"] != "example" {
		t.Fatalf("JSON line = %v", warn)
	}
	for k, v := range map[string]string{"bytes": "8388608", "big": "9007199254740993", "ids": "[1 2.5]", "sizes": "map[a:2097152]"} {
		if warn[0][k] != v {
			t.Errorf("JSON line's %s = %q, want %q", k, warn[0][k], v)
		}
	}
	if plain := rec.find("plain text line"); len(plain) != 1 || plain[0]["level"] != "INFO" {
		t.Errorf("plain line = %v", plain)
	}
	if bad := rec.find(`{"not hclog": true`); len(bad) != 1 {
		t.Errorf("broken JSON line = %v", bad)
	}
	if all := rec.find(""); len(all) != 3 {
		t.Errorf("%d records, want 3 (no empty line): %v", len(all), all)
	}
}
