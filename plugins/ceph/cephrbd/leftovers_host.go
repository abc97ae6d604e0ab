package cephrbd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// hostLeftovers lists what this host keeps for the storage under the
// state directory that the query does not account for: rbd-mirror
// processes and run directories of environments it does not hold, and
// the storage's conf and keyrings when it holds no environment using
// the storage. Paths only: never a file's content.
func (b *Backend) hostLeftovers(sd side, h held) []sdk.Leftover {
	var out []sdk.Leftover
	for _, p := range b.rbdMirrorProcesses() {
		if h.envs[p.envID] || !b.runDirUses(p.envID, sd.key(), p.cluster) {
			continue
		}
		out = append(out, b.processLeftover(p))
	}
	dirs, _ := filepath.Glob(filepath.Join(b.stateDir, "run", "*"))
	sort.Strings(dirs)
	for _, dir := range dirs {
		envID := filepath.Base(dir)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || h.envs[envID] || !b.runDirUses(envID, sd.key(), "") {
			continue
		}
		out = append(out, b.runDirLeftover(envID))
	}
	if !h.uses() {
		if l, ok := b.storageFilesLeftover(sd); ok {
			out = append(out, l)
		}
	}
	return out
}

// rbdMirrorProcess is an rbd-mirror this plugin started on this host: its
// admin socket is in a run directory of the state directory.
type rbdMirrorProcess struct {
	pid     int
	envID   string
	asok    string
	cluster string // its --cluster, the target storage's key
}

// rbdMirrorProcesses finds them in /proc, by their command line: a pid
// file may be gone with its run directory while the process lives on.
func (b *Backend) rbdMirrorProcesses() []rbdMirrorProcess {
	runRoot := filepath.Join(b.stateDir, "run") + string(filepath.Separator)
	entries, _ := os.ReadDir("/proc")
	var out []rbdMirrorProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(raw, []byte("rbd-mirror")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		p := rbdMirrorProcess{pid: pid, asok: argAfter(args, "--admin-socket"), cluster: argAfter(args, "--cluster")}
		if !strings.HasPrefix(p.asok, runRoot) || filepath.Base(p.asok) != "rbd-mirror.asok" || !strings.HasSuffix(filepath.Base(args[0]), "rbd-mirror") {
			continue
		}
		p.envID = filepath.Base(filepath.Dir(p.asok))
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// runDirUses says whether the environment's run directory is about the
// storage key: its env.json names it as source or target, or (without
// env.json) its rbd-mirror serves it (cluster) or reads its conf.
func (b *Backend) runDirUses(envID, key, cluster string) bool {
	var m marker
	if data, err := os.ReadFile(b.hostMarkerPath(envID)); err == nil && json.Unmarshal(data, &m) == nil {
		return m.Source == key || m.Target == key
	}
	if cluster == key {
		return true
	}
	_, err := os.Stat(filepath.Join(b.runDir(envID), key+".conf"))
	return err == nil
}

func (b *Backend) processLeftover(p rbdMirrorProcess) sdk.Leftover {
	desc := fmt.Sprintf("the rbd-mirror this plugin started for environment %s (on the cluster of storage %s), "+
		"and the daemon holds no such environment", p.envID, p.cluster)
	b.mu.Lock()
	_, supervised := b.daemons[p.envID]
	b.mu.Unlock()
	check := fmt.Sprintf("it is still that rbd-mirror (`tr '\\0' ' ' < /proc/%d/cmdline` names %s).", p.pid, p.asok)
	if supervised {
		desc += "; this plugin process still supervises it and starts it again when it exits"
		check += " This plugin process starts it again: restart the plugin (mirrord) first."
	}
	return sdk.Leftover{
		Kind:        "process",
		Name:        fmt.Sprintf("rbd-mirror process %d on this host (admin socket %s)", p.pid, p.asok),
		Description: desc,
		Remedy:      remedy(check, fmt.Sprintf("kill %d", p.pid)),
	}
}

// runDirLeftover is an environment's run directory, and its rbd-mirror's
// log files.
func (b *Backend) runDirLeftover(envID string) sdk.Leftover {
	dir := b.runDir(envID)
	cmds := []string{"rm -r " + shellQuote(dir)}
	if logs := b.rbdMirrorLogs(envID); len(logs) > 0 {
		quoted := make([]string, len(logs))
		for i, l := range logs {
			quoted[i] = shellQuote(l)
		}
		cmds = append(cmds, "rm -f "+strings.Join(quoted, " "))
	}
	return sdk.Leftover{
		Kind: "file",
		Name: fmt.Sprintf("run directory %s on this host", dir),
		Description: fmt.Sprintf("the files of environment %s's rbd-mirror (its conf, a keyring, admin socket, pid file), "+
			"and the daemon holds no such environment", envID),
		Remedy: remedy("its rbd-mirror no longer runs (no process leftover names "+b.asokPath(envID)+").", cmds...),
	}
}

// rbdMirrorLogs are the log files of the environment's rbd-mirror
// (newDaemon names them <env>.<cluster>-<name>.log).
func (b *Backend) rbdMirrorLogs(envID string) []string {
	var m marker
	target := ""
	if data, err := os.ReadFile(b.hostMarkerPath(envID)); err == nil && json.Unmarshal(data, &m) == nil {
		target = m.Target
	} else if confs, _ := filepath.Glob(filepath.Join(b.runDir(envID), "clusters.*.conf")); len(confs) == 1 {
		target = strings.TrimSuffix(filepath.Base(confs[0]), ".conf")
	}
	if target == "" {
		return nil
	}
	logs, _ := filepath.Glob(filepath.Join(b.stateDir, "log", globEscape(envID+"."+target)+"-*.log"))
	sort.Strings(logs)
	return logs
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`)
	return r.Replace(s)
}

// storageFilesLeftover is the storage's conf and keyrings in the state
// directory, once the query holds no environment using it.
func (b *Backend) storageFilesLeftover(sd side) (sdk.Leftover, bool) {
	k := globEscape(sd.key())
	var files []string
	for _, pattern := range []string{k + ".conf", k + ".client.*.keyring"} {
		found, _ := filepath.Glob(filepath.Join(b.stateDir, pattern))
		files = append(files, found...)
	}
	if len(files) == 0 {
		return sdk.Leftover{}, false
	}
	sort.Strings(files)
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = shellQuote(f)
	}
	return sdk.Leftover{
		Kind: "file",
		Name: fmt.Sprintf("conf and keyrings of storage %s in %s on this host", sd.key(), b.stateDir),
		Description: "the files the plugin connects to the storage with (the keyrings hold secrets), " +
			"and the daemon holds no environment using this storage",
		Remedy: remedy("no environment on this host uses storage "+sd.key()+" any more (any call about it writes them again).",
			"rm -f "+strings.Join(quoted, " ")),
	}, true
}
