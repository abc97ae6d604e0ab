package nats_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	mnats "github.com/cdmdr/mirror/adapters/nats"
	"github.com/cdmdr/mirror/adapters/nats/natstest"
)

// records keeps what a logger logged.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// modeLogged returns the level and mode of the "bus mode" record.
func (r *records) modeLogged(t *testing.T) (slog.Level, string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Message != "bus mode" {
			continue
		}
		mode := ""
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "mode" {
				mode = a.Value.String()
			}
			return true
		})
		return rec.Level, mode
	}
	t.Fatal(`no "bus mode" logged`)
	return 0, ""
}

func TestModeDetection(t *testing.T) {
	withJS := natstest.Start(t, true)
	withoutJS := natstest.Start(t, false)
	for _, tc := range []struct {
		name      string
		url       string
		mode      string
		wantMode  string
		wantLevel slog.Level
		wantErr   string
	}{
		{"AutoWithJetStream", withJS.URL(), "", mnats.ModeJetStream, slog.LevelInfo, ""},
		{"AutoWithoutJetStream", withoutJS.URL(), mnats.ModeAuto, mnats.ModeCore, slog.LevelWarn, ""},
		{"JetStreamRequired", withJS.URL(), mnats.ModeJetStream, mnats.ModeJetStream, slog.LevelInfo, ""},
		{"JetStreamMissing", withoutJS.URL(), mnats.ModeJetStream, "", 0, "jetstream not enabled"},
		{"CoreChosen", withJS.URL(), mnats.ModeCore, mnats.ModeCore, slog.LevelWarn, ""},
		{"UnknownMode", withJS.URL(), "kafka", "", 0, `nats mode "kafka"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.url)
			cfg.Mode = tc.mode
			recs := &records{}
			b, err := mnats.NewBus(t.Context(), connect(t, cfg, natstest.Logger()), cfg, slog.New(recs))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewBus: %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewBus: %v", err)
			}
			if b.Mode() != tc.wantMode {
				t.Errorf("Mode() = %s, want %s", b.Mode(), tc.wantMode)
			}
			if level, mode := recs.modeLogged(t); level != tc.wantLevel || mode != tc.wantMode {
				t.Errorf("logged bus mode %s at %v, want %s at %v", mode, level, tc.wantMode, tc.wantLevel)
			}
		})
	}
}

// A second daemon (or a restart with other settings) updates the stream
// rather than failing on it.
func TestStreamUpdated(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	newBus(t, cfg)
	cfg.StreamSubjects = append(cfg.StreamSubjects, "more.>")
	b := newBus(t, cfg)
	in := newRecorder()
	subscribe(t, b, "more.x", "d", in.handle) // durable: needs the stream to capture more.>
	rawPublish(t, srv.URL(), "more.x", "m")
	in.waitFor(t, "delivery on the added subject", func(got []string) bool { return len(got) == 1 })
}

// Daemons starting together all find or create the one stream.
func TestStreamCreatedByDaemonsAtOnce(t *testing.T) {
	srv := natstest.Start(t, true)
	cfg := testConfig(srv.URL())
	log := natstest.Logger()
	errs := make(chan error, 6)
	for range cap(errs) {
		nc := connect(t, cfg, log)
		go func() {
			_, err := mnats.NewBus(t.Context(), nc, cfg, log)
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatalf("NewBus of a daemon starting with others: %v", err)
		}
	}
	b := newBus(t, cfg)
	if b.Mode() != mnats.ModeJetStream {
		t.Fatalf("mode = %s, want jetstream", b.Mode())
	}
}
