package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runWith runs mirrorctl with exactly these arguments and variables.
func runWith(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	e := &env{getenv: func(k string) string { return vars[k] }, stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: time.Now}
	code := e.run(t.Context(), args)
	return scannedRun(t, vars, args, result{code, stdout.String(), stderr.String()})
}

// An unreachable etcd is named, with the timeout, and exits 5.
func TestUnreachableEtcd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	r := runWith(t, map[string]string{"MIRRORD_ETCD_ENDPOINTS": addr}, "get", "volumes", "--etcd-dial-timeout", "500ms")
	if r.code != exitUnreachable || !strings.Contains(r.stderr, addr) || !strings.Contains(r.stderr, "500ms") || !strings.Contains(r.stderr, "unreachable") {
		t.Fatalf("exit %d, want %d, naming %s and the timeout: %s", r.code, exitUnreachable, addr, r.stderr)
	}
}

// Refused credentials say which user; the configuration file is read.
func TestAuthRefused(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := f.srv.DirectClient(t)
	for i, step := range []func() error{
		func() error { _, err := c.RoleAdd(ctx, "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "cdm", "right-password"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
	f.scanAsRoot("root-pw")
	file := filepath.Join(t.TempDir(), "mirrord.yaml")
	yaml := "etcd:\n  endpoints: [" + strings.Join(f.srv.Endpoints(), ",") + "]\n  username: cdm\n  dial_timeout: 30s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runWith(t, map[string]string{"MIRRORD_ETCD_PASSWORD": "wrong-password"}, "get", "environments", "--config", file)
	if r.code != exitUnreachable || !strings.Contains(r.stderr, `refused user "cdm"`) || strings.Contains(r.stderr, "wrong-password") {
		t.Fatalf("wrong password: exit %d: %s", r.code, r.stderr)
	}
	r = runWith(t, nil, "get", "environments", "--etcd-endpoints", strings.Join(f.srv.Endpoints(), ","), "--etcd-dial-timeout", "30s")
	if r.code != exitUnreachable || !strings.Contains(r.stderr, "requires authentication") {
		t.Fatalf("no user: exit %d: %s", r.code, r.stderr)
	}
}

// The completion scripts are valid shell and offer the commands.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh"} {
		r := runWith(t, nil, "completion", sh)
		if r.code != 0 || !strings.Contains(r.stdout, "complete -F _mirrorctl mirrorctl") || !strings.Contains(r.stdout, "stop_and_delete") {
			t.Fatalf("completion %s: exit %d:\n%s", sh, r.code, r.stdout)
		}
		if sh == "bash" {
			if out, err := exec.Command("bash", "-n", "-c", r.stdout).CombinedOutput(); err != nil {
				t.Fatalf("bash -n: %v: %s", err, out)
			}
		}
	}
	if r := runWith(t, nil, "completion", "fish"); r.code != exitUsage {
		t.Errorf("completion fish: exit %d, want %d", r.code, exitUsage)
	}
}
