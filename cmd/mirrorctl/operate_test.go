package main

import (
	"context"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// An operation the state rules allow is written exactly as the DR
// manager writes it.
func TestOperationWritten(t *testing.T) {
	f := newFixture(t)
	f.seed()
	r := f.run("volume", "pause", "storage.11.13/volume.7")
	if r.code != 0 || r.stdout != "volume storage.11.13/volume.7: {\"operation\":\"pause\"} written (was initializing)\n" {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if v, _ := f.get("mirror_volume/storage.11.13/volume.7/operation"); v != `{"operation":"pause"}` {
		t.Errorf("volume operation = %s", v)
	}
	if r := f.run("environment", "stop", "storage.11.13", "--force"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if v, _ := f.get("mirror_environment/storage.11.13/operation"); v != `{"operation":"stop","force":true}` {
		t.Errorf("environment operation = %s", v)
	}
	if r := f.run("environment", "start", "storage.11.13"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if v, _ := f.get("mirror_environment/storage.11.13/operation"); v != `{"operation":"start"}` {
		t.Errorf("environment operation = %s", v)
	}
}

// A move the rules refuse says why, exits 4 and writes nothing.
func TestOperationRefusedWritesNothing(t *testing.T) {
	f := newFixture(t)
	f.seed()
	rev := f.revision()
	// Volume 8 is paused: start may begin from waiting, initializing,
	// mirroring or error only.
	r := f.run("volume", "start", "storage.11.13/volume.8")
	if r.code != exitRefused {
		t.Fatalf("exit %d, want %d: %s", r.code, exitRefused, r.stderr)
	}
	if !strings.Contains(r.stderr, "not allowed while the volume is paused") || !strings.Contains(r.stderr, "nothing written") {
		t.Errorf("the refusal does not say why: %s", r.stderr)
	}
	// No record: nothing to ask, nothing written.
	if r := f.run("volume", "pause", "storage.11.13/volume.9"); r.code != exitFailed || !strings.Contains(r.stderr, "no record") {
		t.Errorf("volume without record: exit %d: %s", r.code, r.stderr)
	}
	if got := f.revision(); got != rev {
		t.Fatalf("etcd revision moved from %d to %d: something was written", rev, got)
	}
	if v, _ := f.get("mirror_volume/storage.11.13/volume.8/operation"); v != `{"operation":"pause"}` {
		t.Errorf("operation = %s, want the old one", v)
	}
}

// --wait follows the status: the end state exits 0, an error under the
// operation 1, a refusal by the daemon 4, no progress 3; an operation
// that ends by deleting the keys is done when they are gone.
func TestOperationWait(t *testing.T) {
	f := newFixture(t)
	f.seed()
	vol7 := "mirror_volume/storage.11.13/volume.7"
	// daemon plays mirrord: once the operation is written, it writes what
	// follows.
	daemon := func(op string, then func()) chan result {
		done := make(chan result, 1)
		ctx, cancel := context.WithCancel(t.Context())
		w := f.cli.Watch(ctx, vol7+"/operation")
		go func() { done <- f.run("volume", op, "storage.11.13/volume.7", "--wait", "--timeout", "20s") }()
		for resp := range w {
			if len(resp.Events) > 0 && strings.Contains(string(resp.Events[0].Kv.Value), `"`+op+`"`) {
				break
			}
		}
		cancel()
		then()
		return done
	}
	r := <-daemon("pause", func() {
		f.put(vol7+"/status", `{"state_code":"paused","operation":"pause","owner":"d1"}`)
	})
	if r.code != 0 || !strings.Contains(r.stderr, "paused") {
		t.Errorf("pause --wait: exit %d: %s", r.code, r.stderr)
	}
	r = <-daemon("resume", func() {
		f.put(vol7+"/status", `{"state_code":"error","operation":"resume","error_reason":{"code":"cdm-dr.mirror.volume.failure-resume-unavailable","contents":"cluster unreachable"},"owner":"d1"}`)
	})
	if r.code != exitFailed || !strings.Contains(r.stderr, "cluster unreachable") {
		t.Errorf("resume --wait into error: exit %d: %s", r.code, r.stderr)
	}
	r = <-daemon("stop", func() {
		f.put(vol7+"/status", `{"state_code":"stopping","operation":"stop","owner":"d1"}`)
		if _, err := f.cli.Delete(t.Context(), vol7, clientv3.WithPrefix()); err != nil {
			t.Error(err)
		}
	})
	if r.code != 0 || !strings.Contains(r.stderr, "keys deleted") {
		t.Errorf("stop --wait: exit %d: %s", r.code, r.stderr)
	}
	// Already there: done at once.
	if r = f.run("volume", "pause", "storage.11.13/volume.8", "--wait", "--timeout", "300ms"); r.code != 0 {
		t.Errorf("pause --wait of a paused volume: exit %d: %s", r.code, r.stderr)
	}
	// Nobody acts: the timeout.
	f.put("mirror_volume/storage.11.13/volume.8/status", `{"state_code":"mirroring","operation":"resume","owner":"d1"}`)
	r = f.run("volume", "pause", "storage.11.13/volume.8", "--wait", "--timeout", "300ms")
	if r.code != exitTimeout || !strings.Contains(r.stderr, "not done within 300ms") {
		t.Errorf("nobody acting: exit %d, want %d: %s", r.code, exitTimeout, r.stderr)
	}
}
