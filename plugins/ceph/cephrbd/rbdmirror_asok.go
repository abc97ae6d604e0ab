package cephrbd

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// asokTimeout bounds one question to rbd-mirror's admin socket.
const asokTimeout = 3 * time.Second

// States of an image replayer in rbd-mirror's admin-socket status ("rbd
// mirror status pool/image", field "state"). Ceph defines them in
// ImageReplayer<I>::to_string, src/tools/rbd_mirror/ImageReplayer.cc
// (Pacific: Starting, Replaying, Stopping, Stopped, else Unknown(n)).
const (
	replayerReplaying = "Replaying"
	replayerStopping  = "Stopping"
	replayerStopped   = "Stopped"
	// replayerError is no state of Pacific's ImageReplayer; a daemon that
	// reports it anyway is taken at its word.
	replayerError = "Error"
)

// splitBrainMark is in the description rbd-mirror gives an image whose
// two copies were both written as primaries ("split-brain detected", set
// by its image replayer): replay cannot go on without a resync.
const splitBrainMark = "split-brain"

// asokCommand sends one command to a Ceph admin socket and returns the
// reply, speaking the admin socket protocol: a JSON command ended by a
// NUL byte, answered by a big-endian 32-bit length and that many bytes.
func asokCommand(ctx context.Context, path, command string) ([]byte, error) {
	d := net.Dialer{Timeout: 3 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	req, _ := json.Marshal(map[string]string{"prefix": command, "format": "json"})
	if _, err := c.Write(append(req, 0)); err != nil {
		return nil, err
	}
	out, err := readReply(c)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out, nil
}

// readReply reads one admin-socket reply: its length, then its bytes.
func readReply(r io.Reader) ([]byte, error) {
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if n > 64<<20 {
		return nil, fmt.Errorf("admin socket reply of %d bytes", n)
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, err
	}
	return out, nil
}

// imageReplayerState is what rbd-mirror's admin socket says of one image.
type imageReplayerState struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Description string `json:"description"`
}

// imageStateAt asks the rbd-mirror at asok about one image ("pool/image").
func imageStateAt(ctx context.Context, asok, name string) (imageReplayerState, error) {
	var st imageReplayerState
	out, err := asokCommand(ctx, asok, "rbd mirror status "+name)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil || st.State == "" {
		return st, fmt.Errorf("rbd-mirror does not replay %s yet: %s", name, firstLine(out))
	}
	return st, nil
}

// replayerOf finds, among the rbd-mirror daemons at asoks, the one that
// runs the image's replayer ("pool/image"), and what it says of it.
func replayerOf(ctx context.Context, asoks []string, name string) (imageReplayerState, string, error) {
	var first error
	for _, a := range asoks {
		st, err := imageStateAt(ctx, a, name)
		if err == nil {
			return st, a, nil
		}
		if first == nil {
			first = err
		}
	}
	return imageReplayerState{}, "", first
}

// tellAll sends cmd to every rbd-mirror at asoks; only the one running
// the image acts on it. Only ctx's end is an error.
func tellAll(ctx context.Context, asoks []string, cmd string) error {
	for _, a := range asoks {
		if _, err := asokCommand(ctx, a, cmd); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// poolReplayer is one pool as the rbd-mirror daemon's status shows it:
// its own instance id there, the pool's leader, the instances the leader
// shares images out to (listed by the leader only), and its replayers.
type poolReplayer struct {
	Pool       string   `json:"pool"`
	InstanceID string   `json:"instance_id"`
	LeaderID   string   `json:"leader_instance_id"`
	Instances  []string `json:"instances"`
	// ImageReplayers are the replayers this daemon runs in the pool.
	ImageReplayers []imageReplayerState `json:"image_replayers"`
}

// poolReplayersAt asks the rbd-mirror at asok for its pool replayers.
func poolReplayersAt(ctx context.Context, asok string) ([]poolReplayer, error) {
	out, err := asokCommand(ctx, asok, "rbd mirror status")
	if err != nil {
		return nil, err
	}
	var st struct {
		PoolReplayers []poolReplayer `json:"pool_replayers"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("rbd-mirror status at %s: %w", asok, err)
	}
	return st.PoolReplayers, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
