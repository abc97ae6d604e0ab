package cephrbd

import (
	"flag"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Main is the plugin executable: it reads its flags and serves the
// backend to mirrord until mirrord ends it.
func Main() {
	stateDir := flag.String("state-dir", "/var/lib/mirrord/ceph", "directory for confs, keyrings, rbd-mirror sockets, pid files and logs")
	flag.Parse()
	log := sdk.Logger()
	b := New(log, *stateDir)
	if err := ensureDir(*stateDir); err != nil {
		log.Error("cannot create the state directory", "dir", *stateDir, "error", err)
	}
	sdk.Serve(b)
}
