package harness_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/test/secretscan"
)

// TestSecretScanFails: a keyring written to a status (then overwritten),
// reported in an event and published on the bus fails the test, each
// where it was; a keyring in the storage metadata, where it belongs,
// does not.
func TestSecretScanFails(t *testing.T) {
	keyring := secretscan.Known[0].Value
	rec := &secretscan.Recorder{TB: t}
	// Registered first, so it runs after the harness's scan.
	t.Cleanup(func() {
		want := []string{"KV key mirror_volume/storage.1.2/volume.3/status (revision", "event cdm-dr.mirror.test", "bus message on cdm.dr.mirror.event"}
		all := rec.Errors()
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("the scan did not report the secret in %q; it reported:\n%s", w, all)
			}
		}
		if strings.Contains(all, "clusters/") || strings.Contains(all, keyring) {
			t.Errorf("the scan reported the metadata, or printed the secret:\n%s", all)
		}
		t.Logf("reported:\n%s", all)
	})
	synctest.Test(t, func(t *testing.T) {
		rec.TB = t
		h := harness.New(rec)
		h.Put("clusters/1/storages/1/metadata", `{"keyring":"`+keyring+`"}`)
		h.Put("mirror_volume/storage.1.2/volume.3/status", `{"state_code":"error","reason":"key `+keyring+`"}`)
		h.Put("mirror_volume/storage.1.2/volume.3/status", `{"state_code":"error"}`)
		h.Shared.Events.Report(context.Background(), ports.Event{Code: "cdm-dr.mirror.test", Key: "k", Message: "keyring " + keyring})
		if err := h.Shared.Bus.Publish(context.Background(), "cdm.dr.mirror.event", []byte(`{"m":"`+keyring+`"}`)); err != nil {
			t.Fatal(err)
		}
	})
}
