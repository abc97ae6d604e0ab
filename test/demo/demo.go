package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The demo's volume and snapshot UUIDs: any would do.
const (
	volumeUUID   = "bae4c30d-3119-4870-807e-0e1a9fcbf185"
	snapshotUUID = "5f0c3ad2-8d6b-4e53-9a55-2b7f0a4c9e10"
	// changedBlocks is how many blocks step 6 changes.
	changedBlocks = 5
)

// demo is one run: what it started, and the numbers for the summary.
type demo struct {
	o options
	u *ui

	ws      *workspace
	agent   *child
	mirrord *child
	logs    *logWatcher
	logFile *os.File

	agentLogFile *os.File
	etcd         *clientv3.Client

	agentListen, natsURL string

	size, data, changed, deltaSent, deltaBlocks int64
	firstCopy, deltaLag, snapTime, deleteTime   time.Duration
	firstSent                                   int64
}

func (d *demo) volumePath() string { return filepath.Join(d.ws.source, "volume-"+volumeUUID) }
func (d *demo) copyPath() string   { return filepath.Join(d.ws.target, "volume-"+volumeUUID) }

func (d *demo) run(ctx context.Context) error {
	u := d.u
	fmt.Fprintln(u.w, "mirror demo: mirrord replicates a volume from a source storage to a target")
	fmt.Fprintln(u.w, "storage, the way it protects OpenStack volumes between two sites. Here both")
	fmt.Fprintln(u.w, "storages are local directories standing for NFS shares, and this program plays")
	fmt.Fprintln(u.w, "the two programs that drive mirrord: the cluster manager and the DR manager.")

	steps := []func(context.Context) error{
		d.prepare, d.startAgent, d.startMirrord, d.pair, d.replicate, d.delta, d.snapshot, d.stopAndDelete, d.unpair,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
		if d.mirrord != nil {
			if err := d.mirrord.exited(); err != nil {
				return err
			}
		}
	}
	return nil
}

// prepare makes the workspace and the source volume.
func (d *demo) prepare(ctx context.Context) error {
	ws, err := newWorkspace(d.o.workdir)
	if err != nil {
		return err
	}
	d.ws = ws
	d.size = d.o.sizeMiB << 20
	began := time.Now()
	if d.data, err = writeVolume(d.volumePath(), d.size); err != nil {
		return fmt.Errorf("write the source volume: %w", err)
	}
	sum, err := checksum(d.volumePath())
	if err != nil {
		return err
	}
	d.u.stepf("Made a workspace %s with two directories:", ws.dir)
	d.u.sayf("source-share/  the source storage (a volume lives there as a file, as with Cinder's NFS driver)")
	d.u.sayf("target-share/  the target storage, at the recovery site")
	d.u.sayf("Wrote the volume source-share/volume-%s: %s, of which %s data", volumeUUID, size(d.size), size(d.data))
	d.u.sayf("and %s holes (a sparse file, like a fresh disk), sha256 %s… (%s).", size(d.size-d.data), short(sum), ms(time.Since(began)))
	return nil
}

// startAgent runs mirror-agent on the source share.
func (d *demo) startAgent(ctx context.Context) error {
	if err := d.ws.writeToken(); err != nil {
		return fmt.Errorf("agent token: %w", err)
	}
	var err error
	if d.agentLogFile, err = os.OpenFile(filepath.Join(d.ws.dir, "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
		return err
	}
	logs := newLogWatcher(d.agentLogFile)
	// Port 0: a free port, which the agent logs.
	d.agent, err = start("mirror-agent", d.o.agent, []string{"-dir", d.ws.source, "-listen", "127.0.0.1:0", "-token-file", d.ws.tokenFile}, logs)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, d.agent, 10*time.Second, func() bool { return logs.agentAddress() != "" }); err != nil {
		return err
	}
	addr := logs.agentAddress()
	d.agentListen = addr
	d.u.stepf("Started mirror-agent (pid %d) on %s, next to the source storage.", d.agent.pid(), addr)
	d.u.sayf("It serves the volume files' block checksums and blocks, only to callers holding")
	d.u.sayf("the token in agent-token (a 0600 file), and only files inside source-share/.")
	return nil
}

// startMirrord runs mirrord on an embedded etcd and NATS, with the nfs
// plugin, and waits until it is ready.
func (d *demo) startMirrord(ctx context.Context) error {
	var err error
	if d.logFile, err = os.OpenFile(filepath.Join(d.ws.dir, "mirrord.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
		return err
	}
	d.logs = newLogWatcher(d.logFile)
	began := time.Now()
	d.mirrord, err = start("mirrord", d.o.mirrord, []string{
		// Port 0: free ports, which mirrord logs.
		"--embedded", d.ws.mirrord, "--embedded-etcd-port", "0", "--embedded-nats-port", "0",
		"--plugin-dir", d.o.pluginDir, "--http-address", "127.0.0.1:0", "--daemon-id", "demo",
		"--log-format", "json",
		// Look at the storages often: a demo has no time to wait.
		"--poll-interval", "1s", "--fast-poll-interval", "200ms", "--snapshot-poll-interval", "200ms",
	}, d.logs)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, d.logs, d.mirrord); err != nil {
		return err
	}
	etcdAddr, natsURL, _, _ := d.logs.addresses()
	d.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{etcdAddr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	d.natsURL = natsURL
	pinned := ""
	if _, err := os.Stat(filepath.Join(d.o.pluginDir, "SHA256SUMS")); err == nil {
		pinned = " (its checksum checked against SHA256SUMS)"
	}
	d.u.stepf("Started mirrord (pid %d) with --embedded: its own etcd (%s) and NATS (%s),", d.mirrord.pid(), strings.TrimPrefix(etcdAddr, "http://"), strings.TrimPrefix(natsURL, "nats://"))
	d.u.sayf("in-process. It loaded the nfs plugin from the plugin directory%s", pinned)
	d.u.sayf("and was ready in %s.", ms(time.Since(began)))
	return nil
}

// waitReady waits for mirrord's /readyz to answer 200: etcd answers, its
// session is held, the plugins are loaded.
func waitReady(ctx context.Context, logs *logWatcher, c *child) error {
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, addr, ok := logs.addresses(); ok {
			resp, err := cl.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		if err := c.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("mirrord is not ready after 30 s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pair writes the storages (cluster manager) and the environment (DR
// manager), and waits for mirrord to make the environment ready.
func (d *demo) pair(ctx context.Context) error {
	if err := seedStorages(ctx, d.etcd, d.ws); err != nil {
		return err
	}
	d.u.stepf("As the cluster manager, described the two storages in etcd (type %s):", storageType)
	d.u.sayf("clusters/%d/storages/%d  the source; its metadata names the agent's token file", srcCluster, srcStorage)
	d.u.sayf("clusters/%d/storages/%d  the target; its metadata: directory target-share/, sync every 2 s", tgtCluster, tgtStorage)
	began := time.Now()
	if err := putEnvironment(ctx, d.etcd); err != nil {
		return err
	}
	d.u.sayf("As the DR manager, paired them: %s, operation start.", envKey)
	err := watchStatus(ctx, d.etcd, envKey, func(st status, ok bool) {
		if ok {
			d.u.sayf("mirrord: environment %s (%s)", st.State, explain("environment-"+st.State))
		}
	}, func(st status, ok bool) bool { return ok && st.State == "mirroring" })
	if err != nil {
		return err
	}
	d.u.sayf("The pair is ready to replicate volumes (%s).", ms(time.Since(began)))
	return nil
}

// replicate asks for the volume and shows the first copy.
func (d *demo) replicate(ctx context.Context) error {
	d.u.stepf("As the DR manager, asked mirrord to replicate volume %d:", volumeID)
	d.u.sayf("%s, source_agent %s, operation start.", volKey, d.agentAddr())
	syncs := d.logs.syncCount()
	began := time.Now()
	host, port := d.agentHostPort()
	if err := putVolume(ctx, d.etcd, volumeUUID, host, port); err != nil {
		return err
	}
	var state string
	err := watchStatus(ctx, d.etcd, volKey, func(st status, ok bool) {
		if !ok {
			return
		}
		if st.State != state {
			state = st.State
			d.u.sayf("mirrord: volume %s (%s)", st.State, explain(st.State))
			if st.State == "error" {
				d.u.sayf("   reason: %s", reasonOf(st))
			}
		}
		if st.State == "initializing" {
			d.u.bar(st.Progress, "first copy")
		}
	}, func(st status, ok bool) bool { return ok && st.State == "mirroring" })
	if err != nil {
		return err
	}
	d.firstCopy = time.Since(began)
	d.u.bar(100, "first copy complete")
	// The plugin logs the sync once the catch-up delta after the first
	// copy is done too: the volume may be mirroring a moment before.
	if err := d.waitSync(ctx, syncs, func(s syncRecord) bool { return s.firstCopy }); err != nil {
		return err
	}
	for _, s := range d.logs.syncsSince(syncs) {
		if s.firstCopy {
			d.firstSent += s.bytes
		}
	}
	d.u.sayf("Mirroring %s after the request: %s of data crossed from the agent; the %s of holes", ms(d.firstCopy), size(d.firstSent), size(d.size-d.data))
	alloc, err := allocated(d.copyPath())
	if err != nil {
		return fmt.Errorf("the target copy: %w", err)
	}
	d.u.sayf("were not sent and stay holes on the target (it takes %s on disk).", size(alloc))
	return d.compare("after the first copy")
}

// compare checks that the target copy equals the source volume.
func (d *demo) compare(when string) error {
	src, err := checksum(d.volumePath())
	if err != nil {
		return err
	}
	tgt, err := checksum(d.copyPath())
	if err != nil {
		return err
	}
	if src != tgt {
		return fmt.Errorf("%s the target copy differs from the source: sha256 %s vs %s", when, tgt, src)
	}
	d.u.sayf("Checked: target-share/volume-%s equals the source (sha256 %s…).", volumeUUID[:8]+"…", short(src))
	return nil
}

// delta changes a few blocks of the source and waits for the plugin to
// send them.
func (d *demo) delta(ctx context.Context) error {
	// Change right after a sync ended, so the next one (an interval
	// later) sees the whole change at once.
	syncs := d.logs.syncCount()
	if err := d.waitSync(ctx, syncs, func(syncRecord) bool { return true }); err != nil {
		return err
	}
	syncs = d.logs.syncCount()
	var err error
	if d.changed, err = changeBlocks(d.volumePath(), d.size, changedBlocks); err != nil {
		return fmt.Errorf("change the source volume: %w", err)
	}
	changedAt := time.Now()
	d.u.stepf("Changed %d blocks of the source volume (%s of %s), as a VM writing to its disk would.", changedBlocks, size(d.changed), size(d.size))
	// Sum every sync until the copy equals the source again: a sync that
	// began before the change may carry part of it.
	var sent, blocks int64
	var last syncRecord
	for {
		if err := d.waitSync(ctx, syncs, func(s syncRecord) bool { return s.changed > 0 }); err != nil {
			return err
		}
		for _, s := range d.logs.syncsSince(syncs) {
			sent += s.bytes
			blocks += s.changed
			last = s
		}
		syncs = d.logs.syncCount()
		if blocks >= changedBlocks {
			break
		}
	}
	d.deltaSent, d.deltaBlocks, d.deltaLag = sent, blocks, last.at.Sub(changedAt)
	d.u.sayf("At its next sync (every 2 s) the plugin compared the %d block checksums with the", d.size/blockSize)
	d.u.sayf("copy's and fetched only the %d changed blocks: %s of block data sent for %s", blocks, size(sent), size(d.changed))
	d.u.sayf("changed (plus the list of checksums); the sync took %s.", ms(last.duration))
	d.u.sayf("The target had the change %s after it was written.", ms(d.deltaLag))
	if err := d.compare("after the delta"); err != nil {
		return err
	}
	st, _, err := getStatus(ctx, d.etcd, volKey)
	if err == nil && st.LastSync != "" {
		d.u.sayf("The volume's status in etcd says: last_sync_time %s, lag %q.", st.LastSync, st.Lag)
	}
	return nil
}

// waitSync waits for a sync record from index i on that ok accepts.
func (d *demo) waitSync(ctx context.Context, i int, ok func(syncRecord) bool) error {
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	for {
		for _, s := range d.logs.syncsSince(i) {
			if ok(s) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the plugin's next sync: %w", ctx.Err())
		case <-t.C:
			return errors.New("the plugin did not sync for 20 s (its log lines \"synced\" did not come)")
		case <-d.logs.notify:
		case <-time.After(pollEvery):
		}
	}
}

// snapshot announces a snapshot as the cluster manager does and waits
// for the recovery point.
func (d *demo) snapshot(ctx context.Context) error {
	snapFile := filepath.Join(d.ws.source, "volume-"+volumeUUID+"."+snapshotUUID)
	if err := copyFile(snapFile, d.volumePath()); err != nil {
		return fmt.Errorf("the snapshot file: %w", err)
	}
	want, err := checksum(snapFile)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(d.natsURL, nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	const subject = "cdm.cluster.volume_snapshot.created"
	msg, _ := json.Marshal(map[string]any{
		"cluster_id": srcCluster, "volume_id": volumeID, "volume_uuid": volumeUUID,
		"snapshot_id": snapshotID, "snapshot_uuid": snapshotUUID, "snapshot_name": "demo-1",
	})
	began := time.Now()
	if err := nc.Publish(subject, msg); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	d.u.stepf("Took a snapshot: Cinder's file source-share/volume-…%s (a copy of the volume)", "."+snapshotUUID[:8]+"…")
	d.u.sayf("and, as the cluster manager, announced it on NATS (%s).", subject)
	err = watchStatus(ctx, d.etcd, snapKey, func(st status, ok bool) {
		if ok {
			d.u.sayf("mirrord: snapshot %s (%s)", st.State, explain("snapshot-"+st.State))
		}
	}, func(st status, ok bool) bool { return ok && st.State == "mirrored" })
	if err != nil {
		return err
	}
	d.snapTime = time.Since(began)
	point := filepath.Join(d.ws.target, "volume-"+volumeUUID+".snapshot-"+snapshotUUID)
	got, err := checksum(point)
	if err != nil {
		return fmt.Errorf("the recovery point: %w", err)
	}
	if got != want {
		return fmt.Errorf("the recovery point %s differs from the snapshot: sha256 %s vs %s", point, got, want)
	}
	d.u.sayf("Recovery point target-share/volume-…snapshot-%s… made in %s, recorded at", snapshotUUID[:8], ms(d.snapTime))
	d.u.sayf("%s; it equals the snapshot (sha256 %s…).", snapKey, short(got))
	return nil
}

// stopAndDelete ends the replication and deletes the target copy.
func (d *demo) stopAndDelete(ctx context.Context) error {
	d.u.stepf("As the DR manager, ended the replication: operation stop_and_delete.")
	began := time.Now()
	if err := putOperation(ctx, d.etcd, volKey, "stop_and_delete"); err != nil {
		return err
	}
	state := "mirroring"
	err := watchStatus(ctx, d.etcd, volKey, func(st status, ok bool) {
		if ok && st.State != state {
			state = st.State
			d.u.sayf("mirrord: volume %s (%s)", st.State, explain(st.State))
			if st.State == "error" {
				d.u.sayf("   reason: %s", reasonOf(st))
			}
		}
	}, func(st status, ok bool) bool {
		if ok {
			return false
		}
		gone, err := exists(ctx, d.etcd, volKey)
		return err == nil && !gone
	})
	if err != nil {
		return err
	}
	d.deleteTime = time.Since(began)
	d.u.sayf("mirrord deleted the volume's keys from etcd: done in %s.", ms(d.deleteTime))
	left, err := visible(d.ws.target)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("target-share/ still holds %s after stop_and_delete", strings.Join(left, ", "))
	}
	d.u.sayf("target-share/ holds no volume file any more: the copy and its recovery point are gone.")
	return nil
}

// unpair stops the environment.
func (d *demo) unpair(ctx context.Context) error {
	d.u.stepf("As the DR manager, unpaired the storages: %s, operation stop.", envKey)
	began := time.Now()
	if err := putOperation(ctx, d.etcd, envKey, "stop"); err != nil {
		return err
	}
	err := watchStatus(ctx, d.etcd, envKey, func(st status, ok bool) {
		if ok && st.State != "mirroring" {
			d.u.sayf("mirrord: environment %s (%s)", st.State, explain("environment-"+st.State))
		}
	}, func(st status, ok bool) bool {
		if ok {
			return false
		}
		gone, err := exists(ctx, d.etcd, envKey)
		return err == nil && !gone
	})
	if err != nil {
		return err
	}
	d.u.sayf("mirrord deleted the environment's keys (%s).", ms(time.Since(began)))
	return nil
}

// shutdown stops what run started and removes the workspace, whatever
// happened before.
func (d *demo) shutdown() error {
	var errs []error
	if d.etcd != nil {
		d.etcd.Close()
	}
	stopped := []string{}
	if d.mirrord != nil {
		took, err := d.mirrord.stop(20 * time.Second)
		if err != nil && !isSignalExit(err) {
			errs = append(errs, fmt.Errorf("mirrord: %w", err))
		}
		stopped = append(stopped, fmt.Sprintf("mirrord (and with it the plugin) in %s", ms(took)))
	}
	if d.agent != nil {
		took, err := d.agent.stop(15 * time.Second)
		if err != nil && !isSignalExit(err) {
			errs = append(errs, fmt.Errorf("mirror-agent: %w", err))
		}
		stopped = append(stopped, fmt.Sprintf("mirror-agent in %s", ms(took)))
	}
	for _, f := range []*os.File{d.logFile, d.agentLogFile} {
		if f != nil {
			f.Close()
		}
	}
	if d.ws != nil {
		if err := os.RemoveAll(d.ws.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove the workspace: %w", err))
		}
	}
	if len(errs) == 0 && d.ws != nil {
		d.u.stepf("Shut down: stopped %s; removed the workspace.", strings.Join(stopped, ", "))
	}
	return errors.Join(errs...)
}

// isSignalExit is a child's end by the SIGTERM stop sent: not a failure.
func isSignalExit(err error) bool {
	return err != nil && strings.Contains(err.Error(), "signal: terminated")
}

func (d *demo) logTail() []string {
	if d.logs == nil {
		return nil
	}
	return d.logs.tail()
}

func (d *demo) summary() {
	u := d.u
	fmt.Fprintf(u.w, "\nDone in %s. In short, mirrord:\n", u.since())
	fmt.Fprintf(u.w, "  - copied a %s volume to the target in %s, sending its %s of data but not its holes;\n", size(d.size), ms(d.firstCopy), size(d.firstSent))
	fmt.Fprintf(u.w, "  - replicated a %s change by sending %s (%d blocks) of the volume's %s;\n", size(d.changed), size(d.deltaSent), d.deltaBlocks, size(d.size))
	fmt.Fprintf(u.w, "  - turned a snapshot into a recovery point on the target in %s;\n", ms(d.snapTime))
	fmt.Fprintf(u.w, "  - deleted the copy and its keys when told to, in %s.\n", ms(d.deleteTime))
	fmt.Fprintln(u.w, "Next: README.md (running it for real), docs/contract.md (the keys the DR manager writes).")
}

// explain says what a state means, for someone who never saw mirrord.
func explain(state string) string {
	switch state {
	case "waiting":
		return "its environment is not ready yet"
	case "initializing":
		return "the first full copy is running"
	case "mirroring":
		return "the copy is complete and kept in sync"
	case "stopping":
		return "the sync loop stops"
	case "deleting":
		return "the target copy is being deleted"
	case "error":
		return "something failed; mirrord retries"
	case "environment-initializing":
		return "being prepared on the storages"
	case "environment-mirroring":
		return "ready: volumes may replicate"
	case "environment-stopping":
		return "the pairing is being removed"
	case "snapshot-mirroring":
		return "on its way to the target"
	case "snapshot-mirrored":
		return "a usable recovery point on the target"
	}
	return "see docs/contract.md"
}

func (d *demo) agentAddr() string {
	return d.agentListen
}

func (d *demo) agentHostPort() (string, int) {
	host, port, _ := strings.Cut(d.agentListen, ":")
	p, _ := strconv.Atoi(port)
	return host, p
}
