package cephrbd

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Only a fence's mark on this very process's record replaces it.
func TestInstanceRecordFenced(t *testing.T) {
	const host, pid = "dr-host-1", 4242
	fenced := instanceRecord{InstanceID: "4194", Host: host, Pid: pid, BlocklistedAt: 100, FencedAt: 100}
	if !fenced.fenced(host, pid) {
		t.Errorf("%+v: not taken as fenced", fenced)
	}
	for _, r := range []instanceRecord{
		{InstanceID: "4194", Host: host, Pid: pid, BlocklistedAt: 100}, // a starting rbd-mirror's blocklist
		{InstanceID: "4194", Host: host, Pid: pid},
		{InstanceID: "4194", Host: "dr-host-2", Pid: pid, BlocklistedAt: 100, FencedAt: 100},
		{InstanceID: "4194", Host: host, Pid: pid + 1, BlocklistedAt: 100, FencedAt: 100},
	} {
		if r.fenced(host, pid) {
			t.Errorf("%+v taken as this process fenced", r)
		}
	}
}

// A process stopped by a signal is told apart from a running one.
func TestStoppedBySignal(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	waitState := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for stoppedBySignal(pid) != want {
			if time.Now().After(deadline) {
				t.Fatalf("stoppedBySignal(%d) = %v, want %v", pid, !want, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitState(false)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(true)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitState(false)
	if stoppedBySignal(1 << 30) {
		t.Errorf("a pid that does not exist reads as stopped")
	}
}
