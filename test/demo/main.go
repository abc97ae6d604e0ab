// Command demo is `make demo`: it shows, on one machine and in under a
// minute, what mirrord does. Two local directories stand for a source and
// a target file storage (NFS shares, as Cinder's NFS driver uses them); a
// mirror-agent serves the source, mirrord runs on an embedded etcd and
// NATS with the nfs plugin, and the demo plays the cluster manager and
// the DR manager: it writes their etcd keys and NATS messages and shows
// what mirrord does with them. It starts nothing it does not stop and
// leaves no file behind.
//
//	demo -mirrord BIN -agent BIN -plugin-dir DIR [-workdir DIR]
//
// The binaries are built by `make demo`; the test builds them too.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"
)

// options are the demo's flags.
type options struct {
	mirrord, agent, pluginDir string
	workdir                   string        // parent of the workspace
	sizeMiB                   int64         // the volume's size
	timeout                   time.Duration // the whole run
}

func main() {
	var o options
	flag.StringVar(&o.mirrord, "mirrord", "", "mirrord binary (required)")
	flag.StringVar(&o.agent, "agent", "", "mirror-agent binary (required)")
	flag.StringVar(&o.pluginDir, "plugin-dir", "", "plugin directory holding the nfs plugin (required)")
	flag.StringVar(&o.workdir, "workdir", os.TempDir(), "where the temporary workspace is made")
	flag.Int64Var(&o.sizeMiB, "size", 256, "size of the demo volume, MiB (64..256)")
	flag.DurationVar(&o.timeout, "timeout", 55*time.Second, "give up after this long")
	flag.Parse()
	if o.mirrord == "" || o.agent == "" || o.pluginDir == "" || o.sizeMiB < 64 || o.sizeMiB > 256 {
		fmt.Fprintln(os.Stderr, "usage: demo -mirrord BIN -agent BIN -plugin-dir DIR [-workdir DIR] [-size 64..256]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, o, os.Stdout)
	stop()
	os.Exit(code)
}

// run is the demo; it returns the exit code: 0 when every step did what
// it should, 1 otherwise (what went wrong is printed).
func run(parent context.Context, o options, out io.Writer) int {
	ctx, cancel := context.WithTimeout(parent, o.timeout)
	defer cancel()
	u := &ui{w: out, start: time.Now()}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		u.tty = true
	}
	d := &demo{o: o, u: u}
	err := d.run(ctx)
	// Cleanup runs whatever happened: every process stopped, the
	// workspace removed.
	if cerr := d.shutdown(); err == nil {
		err = cerr
	}
	if err != nil && parent.Err() != nil {
		u.endBar()
		fmt.Fprintf(out, "\nInterrupted after %s.\n", u.since())
		return 1
	}
	if err != nil {
		u.endBar()
		fmt.Fprintf(out, "\nThe demo failed after %s: %v\n", u.since(), err)
		if tail := d.logTail(); len(tail) > 0 {
			fmt.Fprintln(out, "The end of mirrord's log:")
			for _, l := range tail {
				fmt.Fprintln(out, "   ", l)
			}
		}
		return 1
	}
	d.summary()
	return 0
}
