package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demoTimeout bounds the demo's run in the test (the builds before it
// are not counted: the Go build cache makes them quick after the first).
const demoTimeout = 60 * time.Second

// TestDemo builds mirrord, the nfs plugin, mirror-agent and the demo as
// `make demo` does, runs the demo, and checks that it succeeded, that
// source and target were equal after the first copy and after the delta,
// and that it left no process and no file behind.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries and runs mirrord: not in -short")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin, plugins, work := filepath.Join(tmp, "bin"), filepath.Join(tmp, "plugins"), filepath.Join(tmp, "work")
	for _, d := range []string{bin, plugins, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build(t, root, filepath.Join(bin, "mirrord"), "./cmd/mirrord")
	build(t, root, filepath.Join(bin, "demo"), "./test/demo")
	build(t, filepath.Join(root, "plugins/nfs"), filepath.Join(bin, "mirror-agent"), "./cmd/mirror-agent")
	build(t, filepath.Join(root, "plugins/nfs"), filepath.Join(plugins, "nfs"), ".")
	pin(t, plugins, "nfs")

	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "demo"),
		"-mirrord", filepath.Join(bin, "mirrord"), "-agent", filepath.Join(bin, "mirror-agent"),
		"-plugin-dir", plugins, "-workdir", work, "-timeout", "55s")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err = cmd.Run()
	t.Logf("the demo ran %s:\n%s", time.Since(began).Round(time.Millisecond), out.String())
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("the demo did not end within %s", demoTimeout)
	case errors.As(err, &exit):
		t.Fatalf("the demo exited with %d", exit.ExitCode())
	case err != nil:
		t.Fatal(err)
	}
	// The demo checks the checksums itself and fails when they differ;
	// here, that it said so after both syncs.
	if n := strings.Count(out.String(), "equals the source (sha256"); n != 2 {
		t.Errorf("the demo compared source and target %d times, want 2 (after the first copy, after the delta)", n)
	}
	for _, want := range []string{"320 KiB of block data sent for 320 KiB", "snapshot mirrored", "target-share/ holds no volume file any more", "removed the workspace"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if left, err := os.ReadDir(work); err != nil || len(left) != 0 {
		t.Errorf("the demo left %v in its work directory (%v)", names(left), err)
	}
	if runtime.GOOS == "linux" {
		if procs := running(t, tmp); len(procs) > 0 {
			t.Errorf("processes left running: %s", strings.Join(procs, "; "))
			kill(procs) // the test itself leaves nothing running either
		}
	}
}

func build(t *testing.T, dir, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s in %s: %v\n%s", pkg, dir, err, b)
	}
	// Whatever the umask: mirrord refuses a plugin others may write.
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
}

// pin writes the plugin directory's SHA256SUMS, as `make demo` does.
func pin(t *testing.T, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(hex.EncodeToString(sum[:])+"  "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// running lists the processes whose executable or command line is under
// dir: whatever the demo started (mirrord, its plugin, the agent) and
// did not stop.
func running(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", pid, "exe"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if strings.HasPrefix(exe, dir) || bytes.Contains(cmdline, []byte(dir)) {
			out = append(out, pid+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

// kill ends the processes running lists ("pid cmdline").
func kill(procs []string) {
	for _, p := range procs {
		pid, _, _ := strings.Cut(p, " ")
		if n, err := strconv.Atoi(pid); err == nil {
			_ = syscall.Kill(n, syscall.SIGKILL)
		}
	}
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
