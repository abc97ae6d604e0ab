// Command mirror-plugin-ceph is the Ceph RBD storage plugin of mirrord:
// it serves openstack.storage.type.ceph by driving rbd-mirror between
// two Ceph clusters through librados/librbd (go-ceph).
package main

import (
	"flag"

	"github.com/cdmdr/mirror/plugins/sdk"
)

func main() {
	stateDir := flag.String("state-dir", "/var/lib/mirrord/ceph", "directory for confs, keyrings, rbd-mirror sockets, pid files and logs")
	flag.Parse()
	log := sdk.Logger()
	b := New(log, *stateDir)
	if err := ensureDir(*stateDir); err != nil {
		log.Error("cannot create the state directory", "dir", *stateDir, "error", err)
	}
	sdk.Serve(b)
}
