package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestHelp: -h asks for the usage: on stdout, exit 0, for mirrord and its
// subcommand alike.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string // in the usage
	}{
		{[]string{"-h"}, []string{"Usage: mirrord [flags]", "-etcd-endpoints", "mirrord --version"}},
		{[]string{"--help"}, []string{"Usage: mirrord [flags]"}},
		{[]string{"leftovers", "-h"}, []string{"Usage: mirrord leftovers [flags]", "-timeout"}},
	} {
		var stdout, stderr bytes.Buffer
		code := command(context.Background(), c.args, env(nil), &stdout, &stderr)
		if code != 0 {
			t.Errorf("%q: exit code %d, want 0; stderr: %s", c.args, code, stderr.String())
		}
		for _, w := range c.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%q: stdout lacks %q:\n%s", c.args, w, stdout.String())
			}
		}
		if stderr.Len() > 0 {
			t.Errorf("%q: stderr holds %q, want nothing", c.args, stderr.String())
		}
	}
}

// TestHelpWrongFlag: a flag mirrord does not know is still an error: exit
// 2, saying which flag, on stderr.
func TestHelpWrongFlag(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"leftovers", "--no-such-flag"}} {
		var stdout, stderr bytes.Buffer
		if code := command(context.Background(), args, env(nil), &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit code %d, want 2", args, code)
		}
		if !strings.Contains(stderr.String(), "flag provided but not defined: -no-such-flag") {
			t.Errorf("%q: stderr does not name the flag:\n%s", args, stderr.String())
		}
		if stdout.Len() > 0 {
			t.Errorf("%q: stdout holds %q, want nothing", args, stdout.String())
		}
	}
}

// TestVersion: mirrord --version prints what the binary was built from
// and exits 0.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		var stdout, stderr bytes.Buffer
		if code := command(context.Background(), []string{arg}, env(nil), &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit code %d, want 0; stderr: %s", arg, code, stderr.String())
		}
		if out := stdout.String(); !strings.HasPrefix(out, "mirrord ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("%s printed %q, want mirrord's version and %s", arg, out, runtime.Version())
		}
	}
	// What `go build` records in a binary built from a git checkout.
	info := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/cdmdr/mirror", Version: "v0.0.0-20261201041500-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef"},
			{Key: "vcs.time", Value: "2026-12-01T04:15:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	want := "mirrord v0.0.0-20261201041500-0123456789ab+dirty (revision 0123456789abcdef, 2026-12-01T04:15:00Z, modified) " +
		runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if got := versionLine(info); got != want {
		t.Errorf("versionLine = %q\nwant          %q", got, want)
	}
	if got := versionLine(nil); !strings.HasPrefix(got, "mirrord unknown go") {
		t.Errorf("versionLine without build info = %q", got)
	}
}
