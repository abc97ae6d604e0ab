package main

import (
	"io"
	"testing"
)

// The demo's numbers come from mirrord's log: a line split across writes,
// the plugin's sync records and the addresses must all be read.
func TestLogWatcherReadsSyncsAndAddresses(t *testing.T) {
	l := newLogWatcher(io.Discard)
	lines := []string{
		`{"msg":"embedded servers running","etcd":["http://127.0.0.1:2379"],"nats":"nats://127.0.0.1:4222"}`,
		`{"msg":"http endpoints serving","addr":"127.0.0.1:9464"}`,
		`not json`,
		`{"msg":"synced","plugin":"nfs","first_copy":true,"blocks_changed":0,"bytes":41943040,"duration":"392ms"}`,
		`{"msg":"synced","plugin":"nfs","first_copy":false,"blocks_changed":5,"bytes":327680,"duration":"64ms"}`,
	}
	for _, line := range lines {
		b := []byte(line + "\n")
		// Write each line in two pieces, as a pipe may deliver it.
		half := len(b) / 2
		for _, p := range [][]byte{b[:half], b[half:]} {
			if _, err := l.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	etcd, nats, http, ok := l.addresses()
	if !ok || etcd != "http://127.0.0.1:2379" || nats != "nats://127.0.0.1:4222" || http != "127.0.0.1:9464" {
		t.Errorf("addresses = %q %q %q %v", etcd, nats, http, ok)
	}
	s := l.syncsSince(0)
	if len(s) != 2 || !s[0].firstCopy || s[0].bytes != 41943040 || s[1].firstCopy || s[1].changed != 5 || s[1].bytes != 327680 || s[1].duration.Milliseconds() != 64 {
		t.Errorf("syncs = %+v", s)
	}
	if got := l.syncsSince(2); got != nil {
		t.Errorf("syncsSince(2) = %+v, want none", got)
	}
	if len(l.tail()) != len(lines) {
		t.Errorf("tail holds %d lines, want %d", len(l.tail()), len(lines))
	}
}
