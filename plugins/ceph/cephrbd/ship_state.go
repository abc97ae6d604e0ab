package cephrbd

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// What the ship engine (ship.go) keeps on the storage. Everything it
// needs to resume is there, in names Ceph keeps atomically: the recovery
// points are snapshots named shipSnapPrefix+tag+"."+seq+"."+unix-ms, made
// first on the source, then, once the diff up to it is flushed, on the
// target. A target snapshot of that name therefore always is a complete
// point, and the newest one that the source still has is the base of the
// next step. No metadata key says "last synced": after a crash it could
// disagree with the snapshots.
//
// User snapshots (the plugin's recovery points, "snapshot-<uuid>") ride
// on the same scheme (ShipUserSnapshots, ship_snap.go): each is shipped
// into the target's head, flushed, and only then snapshotted under its
// source name, so a target snapshot of that name is complete too. Its
// diff is taken from the newest snapshot both sides have that is older
// by source snapshot id (a point of this chain or a user snapshot
// shipped before), and what the head got since that base is copied
// again from the snapshot; without one (before the first copy, or
// older than all both sides share) it is a full copy. The head then
// holds the user snapshot rather than the last point, which ShipStep's
// refresh already covers (its diff of the target from its base lists
// every extent written since). Steps prune only their chain's points,
// and ShipForget removes only those from the source: user snapshots are
// the plugin's, removed on the target by ShipRemoveUserSnapshot.
const (
	shipSnapPrefix = "mirror.ship."
	// shipMarkKey, image metadata on the target, names the source the
	// engine created the image for (shipOrigin as JSON). An image without
	// it is not the engine's and is never written.
	shipMarkKey = "mirror.ship.origin"
	// shipProgressKey, image metadata on the target during a full copy:
	// "<point> <bytes done> <bytes total>". Informational only.
	shipProgressKey = "mirror.ship.progress"
	// shipCreatingPrefix names a target image while the engine creates
	// and marks it; renamed to its real name once marked, so that a crash
	// never leaves an unmarked image under the real name (which the next
	// step would then refuse forever).
	shipCreatingPrefix = "mirror.ship.creating."
	// shipTargetKeep is how many points the target keeps. The newest is
	// the base of the next step; the two before it are recovery points
	// to go back to when the newest already holds bad data (a
	// corruption replicated within one interval). Three bounds the space
	// the target's snapshots pin to about three intervals of changes.
	// The source keeps only the base: its other points are of no use to
	// the engine and pin space on the production cluster.
	shipTargetKeep = 3
)

// ShipSide is one end of a ship: an open pool (with its namespace set)
// of a cluster, and that cluster's fsid (rados.Conn.GetFSID).
type ShipSide struct {
	IO   *rados.IOContext
	FSID string
}

// ShipPoint is one recovery point of a shipped image.
type ShipPoint struct {
	Name string
	// Seq orders the points of one target: each step makes the next.
	// Hosts' clocks may disagree, so Taken does not order them.
	Seq uint64
	// Taken is when the source snapshot was made, by the clock of the
	// host that made it.
	Taken time.Time
}

// IsZero says there is no point.
func (p ShipPoint) IsZero() bool { return p.Name == "" }

// shipOrigin is the mark a target image carries: the source image it is
// the copy of.
type shipOrigin struct {
	FSID      string `json:"fsid"`
	Pool      string `json:"pool"`
	Namespace string `json:"namespace,omitempty"`
	Image     string `json:"image"`
}

func (o shipOrigin) String() string {
	spec := o.Pool + "/"
	if o.Namespace != "" {
		spec += o.Namespace + "/"
	}
	return spec + o.Image + " of cluster " + o.FSID
}

// sideSpec is pool[/namespace] of a side, for errors and marks.
func sideSpec(s ShipSide) (pool, ns string, err error) {
	if s.IO == nil {
		return "", "", errors.New("no open pool")
	}
	if pool, err = s.IO.GetPoolName(); err != nil {
		return "", "", fmt.Errorf("read the pool's name: %w", err)
	}
	if ns, err = s.IO.GetNamespace(); err != nil {
		return "", "", fmt.Errorf("read the pool's namespace: %w", err)
	}
	return pool, ns, nil
}

func imageSpec(s ShipSide, image string) string {
	pool, ns, err := sideSpec(s)
	if err != nil {
		return image
	}
	if ns != "" {
		return pool + "/" + ns + "/" + image
	}
	return pool + "/" + image
}

func originOf(src ShipSide, image string) (shipOrigin, error) {
	pool, ns, err := sideSpec(src)
	if err != nil {
		return shipOrigin{}, fmt.Errorf("source: %w", err)
	}
	return shipOrigin{FSID: src.FSID, Pool: pool, Namespace: ns, Image: image}, nil
}

// shipTag names the target in the points' names, so that one source
// image shipped to several targets keeps one chain of points per target
// and no step prunes another target's base. Any host derives the same tag.
func shipTag(dst ShipSide) (string, error) {
	pool, ns, err := sideSpec(dst)
	if err != nil {
		return "", fmt.Errorf("target: %w", err)
	}
	if dst.FSID == "" {
		return "", errors.New("target: no cluster fsid")
	}
	sum := sha256.Sum256([]byte(dst.FSID + "/" + pool + "/" + ns))
	return fmt.Sprintf("%x", sum[:4]), nil
}

func shipSnapName(tag string, seq uint64, taken time.Time) string {
	return fmt.Sprintf("%s%s.%d.%d", shipSnapPrefix, tag, seq, taken.UnixMilli())
}

// parseShipPoint reads a snapshot name of tag's chain.
func parseShipPoint(tag, name string) (ShipPoint, bool) {
	rest, ok := strings.CutPrefix(name, shipSnapPrefix+tag+".")
	if !ok {
		return ShipPoint{}, false
	}
	seqS, msS, ok := strings.Cut(rest, ".")
	if !ok {
		return ShipPoint{}, false
	}
	seq, err1 := strconv.ParseUint(seqS, 10, 64)
	ms, err2 := strconv.ParseInt(msS, 10, 64)
	if err1 != nil || err2 != nil {
		return ShipPoint{}, false
	}
	return ShipPoint{Name: name, Seq: seq, Taken: time.UnixMilli(ms).UTC()}, true
}

// shipPoints are the points of tag's chain among snaps, oldest first.
// Any other snapshot (a user's, another target's chain) is not one.
func shipPoints(snaps []rbd.SnapInfo, tag string) []ShipPoint {
	var pts []ShipPoint
	for _, s := range snaps {
		if p, ok := parseShipPoint(tag, s.Name); ok {
			pts = append(pts, p)
		}
	}
	slices.SortFunc(pts, func(a, b ShipPoint) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return pts
}

// readMark reads the target's mark; ok is false when it has none.
func readMark(img *rbd.Image) (o shipOrigin, ok bool, err error) {
	v, err := img.GetMetadata(shipMarkKey)
	if shipNotFound(err) {
		return shipOrigin{}, false, nil
	}
	if err != nil {
		return shipOrigin{}, false, fmt.Errorf("read its metadata %s: %w", shipMarkKey, err)
	}
	if err := json.Unmarshal([]byte(v), &o); err != nil {
		return shipOrigin{}, false, fmt.Errorf("metadata %s %q: %w", shipMarkKey, v, err)
	}
	return o, true, nil
}

// ShipState is what the storage says of a shipped image, read from the
// target alone (it must answer when the source is lost).
type ShipState struct {
	// Exists: the target image exists (and is the engine's).
	Exists bool
	// Last is the newest complete point on the target; zero before the
	// first copy is complete. A target point is complete by construction
	// (made only after its diff was flushed), so this needs no source.
	Last ShipPoint
	// Points are the target's points, oldest first.
	Points []ShipPoint
	// Copying: a full copy is under way (or was torn); Done of Total
	// bytes of the image have been passed, as its last progress note
	// says.
	Copying     bool
	Done, Total uint64
}

// FirstCopyDone says the target holds one complete point.
func (s ShipState) FirstCopyDone() bool { return !s.Last.IsZero() }

// LastSyncTime is when the newest complete point was taken on the
// source; zero when there is none.
func (s ShipState) LastSyncTime() time.Time { return s.Last.Taken }

// ShipStatus reads the ship state of image on the target dst. A target
// image that does not exist is a zero state; one without the engine's
// mark is ErrPrecondition.
func ShipStatus(ctx context.Context, dst ShipSide, image string) (ShipState, error) {
	tag, err := shipTag(dst)
	if err != nil {
		return ShipState{}, err
	}
	return call(ctx, func() (ShipState, error) {
		img, err := rbd.OpenImageReadOnly(dst.IO, image, rbd.NoSnapshot)
		if shipNotFound(err) {
			return ShipState{}, nil
		}
		if err != nil {
			return ShipState{}, fmt.Errorf("open the target %s: %w", imageSpec(dst, image), err)
		}
		defer img.Close()
		if _, ok, err := readMark(img); err != nil || !ok {
			return ShipState{}, notOurs(dst, image, err)
		}
		snaps, err := img.GetSnapshotNames()
		if err != nil {
			return ShipState{}, fmt.Errorf("list the snapshots of the target %s: %w", imageSpec(dst, image), err)
		}
		st := ShipState{Exists: true, Points: shipPoints(snaps, tag)}
		if n := len(st.Points); n > 0 {
			st.Last = st.Points[n-1]
		}
		if v, err := img.GetMetadata(shipProgressKey); err == nil {
			var name string
			// A note of a point already complete is stale: the step
			// ended before removing it.
			if _, err := fmt.Sscanf(v, "%s %d %d", &name, &st.Done, &st.Total); err == nil && !slices.ContainsFunc(st.Points, func(p ShipPoint) bool { return p.Name == name }) {
				st.Copying = true
			} else {
				st.Done, st.Total = 0, 0
			}
		}
		return st, nil
	})
}

// shipNotFound: go-ceph reports ENOENT as rbd.ErrNotFound, without its
// errno.
func shipNotFound(err error) bool {
	return errors.Is(err, rbd.ErrNotFound) || isErrno(err, syscall.ENOENT)
}
