package deltasync

import (
	"path/filepath"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// ReadStatus reads the status of volume file name's copy in dir without
// its lock, as another host's plugin may hold it: from the state the
// last sync wrote. An error wrapping fs.ErrNotExist means no sync ever
// began.
func ReadStatus(dir, name string) (Status, error) {
	if err := ValidName(name); err != nil {
		return Status{}, err
	}
	st, err := readState(filepath.Join(stateDirOf(dir, name), "state.json"))
	if err != nil {
		return Status{}, err
	}
	s := Status{FirstCopyDone: st.FirstCopyDone, Size: st.Size, BlockSize: st.BlockSize,
		LastSync: st.LastSync, LastSyncBytes: st.LastSyncBytes, Paused: st.Paused}
	switch n := agentproto.Blocks(st.Size, st.BlockSize); {
	case st.FirstCopyDone:
		s.Progress = 100
	case st.FirstCopyStarted && n > 0:
		s.Progress = 100 * float64(min(st.FirstCopyNext, n)) / float64(n)
	}
	return s, nil
}
