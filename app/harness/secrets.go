package harness

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cdmdr/mirror/test/secretscan"
)

// Secrets is the scanner of the harness: a test adds the secrets of its
// own data with Add. At the end of the test it fails the test when a
// secret is in a daemon's log, in a value written to the KV, in an event
// or on the bus.
func (h *Harness) Secrets() *secretscan.Scanner { return h.secrets }

// scanSecrets scans what the daemons wrote and reports what it found.
// The KV is read through its history, so a status written with a secret
// and overwritten since is found too. Storage records and metadata
// (clusters/) are the cluster manager's input, where keyrings belong.
func (h *Harness) scanSecrets() {
	h.T.Helper()
	s := h.secrets
	for _, ev := range h.Shared.KV.History() {
		if k := ev.KV.Key; !strings.HasPrefix(k, secretscan.InputPrefix) {
			s.Scan(fmt.Sprintf("KV key %s (revision %d)", k, ev.KV.ModRevision), ev.KV.Value)
		}
	}
	for k, v := range h.Shared.KV.Dump() {
		if !strings.HasPrefix(k, secretscan.InputPrefix) {
			s.ScanString("KV key "+k, v)
		}
	}
	for _, e := range h.Shared.Events.Events() {
		data, err := json.Marshal(e)
		if err != nil {
			h.T.Errorf("event %+v: %v", e, err)
			continue
		}
		s.Scan("event "+e.Code, data)
	}
	for _, m := range h.Shared.Bus.All() {
		s.Scan("bus message on "+m.Subject, m.Data)
	}
	s.Report(h.T)
}
