package deltasync

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/cdmdr/mirror/plugins/nfs/deltasync/deltatest"
)

const crashEnv = "DELTASYNC_CRASH_CHILD"

// crashChild runs in a child process: it syncs the copy in dst from src
// and kills itself (SIGKILL: no deferred code, no flush) at the point
// mode names.
func crashChild(mode, src, dst string) error {
	die := func() { syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
	c, err := Open(dst, testName, Options{BlockSize: bs, CheckpointBytes: 16 * bs})
	if err != nil {
		return err
	}
	source := deltatest.New(src)
	switch mode {
	case "first copy":
		source.OnBlock(func(i uint64) {
			if i == 70 {
				die()
			}
		})
	case "transfer":
		source.OnBlock(func(i uint64) {
			if i >= 5 {
				die()
			}
		})
	case "apply":
		c.hooks.beforeApplyRecord = func(n uint64) error {
			if n == 2 {
				die()
			}
			return nil
		}
	}
	_, err = c.Sync(context.Background(), source)
	return err
}

// A process killed during a first copy, a transfer or an apply: the next
// process gets the lock, and the copy is the last complete sync, or
// becomes the new one.
func TestProcessKilled(t *testing.T) {
	for _, mode := range []string{"first copy", "transfer", "apply"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			const blocks = 128
			e.write(0, blocks*bs, 1)
			opts := Options{BlockSize: bs, CheckpointBytes: 16 * bs}
			if mode != "first copy" {
				c := e.open(opts)
				if _, err := c.Sync(t.Context(), e.source); err != nil {
					t.Fatal(err)
				}
				c.Close()
				for i := range int64(10) {
					e.write(i*7*bs, 100, uint64(i)+10)
				}
			}
			var last [32]byte
			if mode != "first copy" {
				last = fileSum(t, e.dstPath())
			}

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+mode, crashEnv+"_SRC="+e.src, crashEnv+"_DST="+e.dst)
			cmd.Stderr = os.Stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v, want killed", err)
			}

			c := e.open(opts) // the dead process's lock is gone
			switch mode {
			case "first copy":
				if exists(e.dstPath()) {
					t.Fatal("an incomplete first copy is visible as the copy")
				}
				if p := c.Status().Progress; p < 100*48.0/blocks || p > 100*64.0/blocks {
					t.Fatalf("progress after the crash: %v, want a checkpoint at 48 or 64 blocks", p)
				}
			case "transfer":
				if fileSum(t, e.dstPath()) != last {
					t.Fatal("a transfer cut by a crash changed the copy")
				}
			case "apply":
				e.requireEqual() // Open applied the journal
			}
			e.source.Reset()
			if _, err := c.Sync(t.Context(), e.source); err != nil {
				t.Fatal(err)
			}
			e.requireEqual()
			if got := e.source.Counts().DataBytes; mode == "first copy" && got > (blocks-48)*bs {
				t.Fatalf("the resumed first copy received %d bytes, want at most %d", got, (blocks-48)*bs)
			}
		})
	}
}
