// Command mirrorctl is the operator's tool for mirror: it shows what the
// daemons do, asks for operations as the DR manager would (checked against
// the state rules first), and finds and removes what is left in etcd. It
// reads mirrord's configuration (--config, MIRRORD_* variables, flags).
//
//	mirrorctl get volumes [storage.11.13[/volume.7]...] [-o table|wide|json|yaml] [--watch]
//	mirrorctl volume pause storage.11.13/volume.7 [--wait] [--timeout 5m]
//	mirrorctl environment stop storage.11.13 [--force] [--wait]
//	mirrorctl doctor [-o json]
//	mirrorctl purge [storage.11.13[/volume.7]...] [--yes]
//	mirrorctl completion bash|zsh
//
// docs/mirrorctl.md describes every command and the exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit codes, the same for every command (docs/mirrorctl.md).
const (
	exitOK          = 0 // done; doctor: nothing found
	exitFailed      = 1 // failed, or the resource reached error; doctor: findings
	exitUsage       = 2 // bad command line or configuration
	exitTimeout     = 3 // --wait ran out of --timeout
	exitRefused     = 4 // the state rules (or purge's safety rule) refused; nothing written
	exitUnreachable = 5 // etcd unreachable, or it refused the credentials
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := command(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what a command runs with: its streams, the environment and the
// clock (tests replace them).
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
}

// command runs args and returns the exit code.
func command(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	return e.run(ctx, args)
}

// run runs args as a command and returns the exit code.
func (e *env) run(ctx context.Context, args []string) int {
	stdout, stderr := e.stdout, e.stderr
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	rest := args[1:]
	switch args[0] {
	case "get", "list", "ls":
		return e.runGet(ctx, rest)
	case "volume", "volumes", "vol":
		return e.runVolumeOp(ctx, rest)
	case "environment", "environments", "env":
		return e.runEnvironmentOp(ctx, rest)
	case "doctor":
		return e.runDoctor(ctx, rest)
	case "purge":
		return e.runPurge(ctx, rest)
	case "completion":
		return e.runCompletion(rest)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "mirrorctl: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: mirrorctl COMMAND [ARGS] [FLAGS]

Look:
  get environments|volumes|snapshots [NAME...]   state, reason, progress, last sync, lag, leader, age
        -o table|wide|json|yaml   --watch (refresh live)
Act (checked against the state rules first; a refused move writes nothing):
  volume start|pause|resume|stop|stop_and_delete|destroy NAME...   [--wait] [--timeout D]
  environment start|stop NAME...                                   [--force] [--wait] [--timeout D]
Repair:
  doctor            leftovers and inconsistencies in etcd, explained
  purge [NAME...]   delete mirror's keys (dry run unless --yes)
  completion bash|zsh

NAME: storage.{source}.{target} (an environment, or all its volumes),
storage.{s}.{t}/volume.{v}, or a full key. Every command takes mirrord's
configuration flags (--config, --etcd-endpoints, ...; mirrorctl get -h).
Exit codes: 0 done, 1 failed or error state (doctor: findings), 2 usage,
3 timeout, 4 refused, 5 etcd unreachable or credentials refused.
`)
}

// usageError marks an error as the command line's fault (exit 2).
type usageError struct{ error }

// exitFor maps a command's error to its exit code, printing it.
func (e *env) exitFor(name string, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "mirrorctl %s: %v\n", name, err)
	var ue usageError
	var ce connectError
	var re refusedError
	var te timeoutError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ce):
		return exitUnreachable
	case errors.As(err, &re):
		return exitRefused
	case errors.As(err, &te):
		return exitTimeout
	}
	return exitFailed
}
