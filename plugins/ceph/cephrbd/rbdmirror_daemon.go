package cephrbd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Supervision pacing: how often a live rbd-mirror is looked at, and the
// wait before starting one that died (doubling, reset after a long run).
const (
	watchInterval     = time.Second
	restartFirstWait  = time.Second
	restartMaxWait    = 30 * time.Second
	restartResetAfter = time.Minute
	// stopKillAfter is how long a stopped rbd-mirror has to exit on TERM.
	stopKillAfter = 15 * time.Second
)

// mirrorDaemon runs and supervises one rbd-mirror process for an
// environment's target cluster.
type mirrorDaemon struct {
	log     *slog.Logger
	envID   string
	runDir  string // <state>/run/<env>
	asok    string
	pidFile string
	args    []string
	env     []string
	b       *Backend
	src     side   // the source storage
	dst     side   // the target storage
	host    string // this host's name, in the instance records

	// recorded holds the "pool/instance id" pairs recorded in the
	// cluster; enforced the pauses applied (by spec), to lift them when
	// their record goes. Both are the pause loop's own.
	recorded map[string]bool
	enforced map[string]pausedImage

	// ctx ends the supervision (not the process: see stop).
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	pid       int
	starts    int
	startedAt time.Time // when the current rbd-mirror was started or adopted
}

func (d *mirrorDaemon) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid > 0 && pidAlive(d.pid, d.asok)
}

func (d *mirrorDaemon) setPid(pid int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pid = pid
	if pid > 0 {
		d.startedAt = time.Now()
	}
}

// starting says whether the current rbd-mirror started (or was adopted)
// less than startingWindow ago: its replayers are appearing, and a pause
// must be applied to each at once.
func (d *mirrorDaemon) starting() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Since(d.startedAt) < startingWindow
}

func (d *mirrorDaemon) currentPid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid
}

// pidAlive says whether pid is a live rbd-mirror serving asok (a zombie
// has an empty cmdline and counts as gone).
func pidAlive(pid int, asok string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	cmd := string(b)
	return strings.Contains(cmd, "rbd-mirror") && strings.Contains(cmd, asok)
}

// readPid reads the pid recorded for the environment, if that process is
// still our rbd-mirror.
func (d *mirrorDaemon) readPid() int { return livePid(d.pidFile, d.asok) }

// start launches the supervisor; it adopts a live rbd-mirror recorded in
// the pid file (left by an earlier plugin process).
func (d *mirrorDaemon) start() {
	go d.supervise()
	go d.reapplyPauses()
	go d.replaceBroken()
}

// quitSupervising ends the supervisor and leaves rbd-mirror running.
func (d *mirrorDaemon) quitSupervising() { d.cancel() }

// supervise keeps one rbd-mirror running until the supervision ends:
// it adopts the recorded one while it lives, else starts one, and starts
// it again when it dies, with a backoff.
func (d *mirrorDaemon) supervise() {
	defer close(d.done)
	wait := newBackoff(restartFirstWait, restartMaxWait)
	for d.ctx.Err() == nil {
		if pid := d.readPid(); pid > 0 {
			if d.watchAdopted(pid) != nil {
				return
			}
			continue
		}
		begin := time.Now()
		if d.runOnce() != nil {
			return
		}
		if time.Since(begin) > restartResetAfter {
			wait = newBackoff(restartFirstWait, restartMaxWait)
		}
		if wait.wait(d.ctx) != nil {
			return
		}
	}
}

// watchAdopted follows an rbd-mirror this supervisor did not start until
// it dies (nil) or the supervision ends (its error).
func (d *mirrorDaemon) watchAdopted(pid int) error {
	d.setPid(pid)
	d.log.Info("adopted a running rbd-mirror", "env", d.envID, "pid", pid)
	for pidAlive(pid, d.asok) {
		if err := sleep(d.ctx, watchInterval); err != nil {
			return err
		}
	}
	d.log.Warn("rbd-mirror died; restarting it", "env", d.envID, "pid", pid)
	return nil
}

// runOnce starts rbd-mirror and waits until it exits (nil) or the
// supervision ends (its error; the process is left to stop).
func (d *mirrorDaemon) runOnce() error {
	defer d.setPid(0)
	// Every rbd-mirror recorded for the environment is dead or must
	// stop: blocklisted, it frees the pool's leader lock and its images'
	// locks at once, instead of after the watch timeout.
	d.blocklistEarlier()
	d.rewindCopies()
	// umask 077: rbd-mirror's logs and sockets stay private.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `umask 077; exec rbd-mirror "$@"`, "rbd-mirror"}, d.args...)...)
	cmd.Env = d.env
	cmd.Dir = d.runDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.log.Error("cannot start rbd-mirror", "env", d.envID, "error", err)
		return nil
	}
	pid := cmd.Process.Pid
	d.setPid(pid)
	d.mu.Lock()
	d.starts++
	d.mu.Unlock()
	_ = writePrivate(d.pidFile, []byte(strconv.Itoa(pid)+"\n"))
	d.log.Info("started rbd-mirror", "env", d.envID, "pid", pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		d.log.Warn("rbd-mirror exited; restarting it", "env", d.envID, "pid", pid, "error", err)
		return nil
	case <-d.ctx.Done():
		<-exited
		return d.ctx.Err()
	}
}

// terminate sends TERM to rbd-mirror's process group, KILL once
// stopKillAfter has passed, and waits until the process is gone.
func terminate(ctx context.Context, pid int, asok string) error {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	killAt := time.Now().Add(stopKillAfter)
	for pidAlive(pid, asok) {
		if time.Now().After(killAt) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("rbd-mirror (pid %d) still running: %w", pid, err)
		}
	}
	return nil
}
