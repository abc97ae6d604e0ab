package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// journal makes the fault plugin's storage outlive its process, as a real
// storage does: every change that succeeded is appended to a file, and a
// new process replays the file before it serves. (memstorage alone forgets
// everything when killed, which no real storage does.)
type journal struct {
	mu   sync.Mutex
	path string
}

// entry is one change: the method and its arguments.
type entry struct {
	Method string
	Env    *sdk.Environment `json:",omitempty"`
	Vol    *sdk.Volume      `json:",omitempty"`
	Force  bool             `json:",omitempty"`
}

// record appends e once the change it stands for succeeded.
func (j *journal) record(e entry, err error) error {
	if err != nil {
		return err
	}
	data, merr := json.Marshal(e)
	if merr != nil {
		return fmt.Errorf("testplugin journal: %w", merr)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	f, oerr := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if oerr != nil {
		return fmt.Errorf("testplugin journal: %w", oerr)
	}
	defer f.Close()
	if _, werr := f.Write(append(data, '\n')); werr != nil {
		return fmt.Errorf("testplugin journal: %w", werr)
	}
	return nil
}

// replay applies the journal's changes to be, in order.
func (j *journal) replay(be sdk.Backend) error {
	f, err := os.Open(j.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	ctx := context.Background()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("testplugin journal %s: %w", j.path, err)
		}
		switch e.Method {
		case "PrepareEnvironment":
			err = be.PrepareEnvironment(ctx, *e.Env)
		case "TeardownEnvironment":
			_, err = be.TeardownEnvironment(ctx, *e.Env, e.Force)
		case "StartVolume":
			err = be.StartVolume(ctx, *e.Vol)
		case "PauseVolume":
			err = be.PauseVolume(ctx, *e.Vol)
		case "ResumeVolume":
			err = be.ResumeVolume(ctx, *e.Vol)
		case "StopVolume":
			_, err = be.StopVolume(ctx, *e.Vol)
		case "DeleteTarget":
			err = be.DeleteTarget(ctx, *e.Vol)
		case "DestroyVolume":
			_, err = be.DestroyVolume(ctx, *e.Vol)
		}
		if err != nil {
			sdk.Logger().Warn("testplugin replay", "method", e.Method, "err", err)
		}
	}
	return sc.Err()
}
