package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// child is a process the demo started; stop ends it.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's, once done is closed
}

// start runs path with args, its stdout and stderr to out.
func start(name, path string, args []string, out io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Only PATH: the children are configured by flags and files, not by
	// whatever MIRRORD_* variables the caller's environment holds.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports a child that ended on its own: for the demo, a failure.
func (c *child) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited early: %v", c.name, c.err)
	default:
		return nil
	}
}

// stop asks the child to end (SIGTERM: mirrord resigns its leaderships
// and stops its plugins, the agent lets transfers finish), kills it after
// grace, and waits for it.
func (c *child) stop(grace time.Duration) (time.Duration, error) {
	began := time.Now()
	select {
	case <-c.done:
		return 0, c.err
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return time.Since(began), c.err
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		return time.Since(began), fmt.Errorf("%s did not stop within %s: killed", c.name, grace)
	}
}

// waitFor waits until ok, c's early exit, the timeout or ctx's end.
func waitFor(ctx context.Context, c *child, timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if err := c.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not up after %s", c.name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
