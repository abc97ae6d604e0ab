package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// errnoError is a go-ceph-like error carrying a negative errno.
type errnoError int

func (e errnoError) Error() string  { return fmt.Sprintf("rbd: ret=%d", int(e)) }
func (e errnoError) ErrorCode() int { return int(e) }

// A keep fences only when the copy's lock is what it could not get.
func TestLockStillHeld(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("take its exclusive lock: %w", errnoError(-30)), true}, // EROFS
		{fmt.Errorf("take its exclusive lock: %w", errnoError(-16)), true}, // EBUSY
		{context.DeadlineExceeded, true},                                   // a call still waiting for it
		{fmt.Errorf("%w (%v)", context.DeadlineExceeded, errnoError(-30)), true},
		{errors.New("mirroring is still enabled"), false},
		{errnoError(-2), false}, // ENOENT: the copy is gone, no lock to fence
		{context.Canceled, false},
	} {
		if got := lockStillHeld(c.err); got != c.want {
			t.Errorf("lockStillHeld(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// Only a locker that is a recorded instance of the environment is fenced.
func TestRecordOf(t *testing.T) {
	recs := []instanceRecord{{Env: "storage.11.13", InstanceID: "4194", Addr: "v1:127.0.0.1:0/1"}}
	if r, ok := recordOf(recs, "client.4194"); !ok || r.Addr != "v1:127.0.0.1:0/1" {
		t.Errorf("recordOf(client.4194) = %+v, %v; want the record", r, ok)
	}
	for _, client := range []string{"client.41945", "client.419", "4194", "osd.4194", ""} {
		if _, ok := recordOf(recs, client); ok {
			t.Errorf("recordOf(%q) found a record", client)
		}
	}
}
