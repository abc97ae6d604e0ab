package cephrbd

import (
	"context"
	"errors"
	"fmt"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// A paused journal-mode copy is held, so that no rbd-mirror anywhere
// replays into it, even one that starts before the plugin can stop its
// replayer on the admin socket (a restart, a takeover by another host):
// the copy carries the image config override rbd_mirroring_replay_delay,
// which rbd-mirror reads when it opens the copy and by which it keeps
// every journal entry waiting (Ceph's "delayed replication"). librbd
// refuses metadata on a non-primary image (EROFS), so the key is written
// where librbd keeps image metadata: the header object's omap, under
// "metadata_" + the key (cls_rbd's layout). A resume removes it and
// restarts the replayer, which reads the override only when it opens the
// copy. Snapshot mode replays nothing without a new mirror snapshot: its
// pause removes the image's snapshot schedule instead (pause.go).
const (
	holdOmapKey = "metadata_conf_rbd_mirroring_replay_delay"
	// holdDelay is about 30 years, in seconds.
	holdDelay = "946080000"
)

// holdCopy sets (hold) or removes the replay delay on the copy name in
// the target pool io. exists is false when there is no copy yet (nothing
// to hold: rbd-mirror creates it, and the supervisor holds it then);
// changed says whether the key was there before a removal.
func holdCopy(ctx context.Context, io *rados.IOContext, name string, hold bool) (exists, changed bool, err error) {
	type result struct{ exists, changed bool }
	r, err := call(ctx, func() (result, error) {
		img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
		if errors.Is(err, rbd.ErrNotFound) {
			return result{}, nil
		}
		if err != nil {
			return result{}, err
		}
		id, err := img.GetId()
		img.Close()
		if err != nil {
			return result{}, err
		}
		header := "rbd_header." + id
		if hold {
			return result{true, true}, io.SetOmap(header, map[string][]byte{holdOmapKey: []byte(holdDelay)})
		}
		vals, err := io.GetOmapValues(header, "", holdOmapKey, 1)
		if err != nil {
			return result{}, err
		}
		if _, ok := vals[holdOmapKey]; !ok {
			return result{true, false}, nil
		}
		return result{true, true}, io.RmOmapKeys(header, []string{holdOmapKey})
	})
	if err != nil {
		return false, false, fmt.Errorf("hold=%v on the copy %s: %w", hold, name, err)
	}
	return r.exists, r.changed, nil
}
