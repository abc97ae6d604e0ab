package deltasync

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// state is state.json: what a later Open (by this or another host's
// plugin) needs to go on where the last one stopped.
type state struct {
	Version   int   `json:"version"`
	Size      int64 `json:"size"`
	BlockSize int   `json:"block_size"`
	// FirstCopyStarted: first-copy exists and was made for Size.
	FirstCopyStarted bool `json:"first_copy_started,omitempty"`
	// FirstCopyNext: blocks before it are in first-copy, fsynced.
	FirstCopyNext uint64 `json:"first_copy_next_block"`
	FirstCopyDone bool   `json:"first_copy_done"`
	// LastSync is when the source read of the last complete sync began.
	LastSync      time.Time `json:"last_sync,omitzero"`
	LastSyncBytes int64     `json:"last_sync_bytes"`
	Paused        bool      `json:"paused,omitempty"`
}

const stateVersion = 1

func readState(path string) (state, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return state{}, fmt.Errorf("read sync state: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return state{}, fmt.Errorf("read sync state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return state{}, fmt.Errorf("read sync state %s: version %d, want %d", path, st.Version, stateVersion)
	}
	return st, nil
}

func writeState(path string, st state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sync state: %w", err)
	}
	return writeFileAtomic(path, append(data, '\n'))
}
