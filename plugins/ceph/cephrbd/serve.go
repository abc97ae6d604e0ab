package cephrbd

import (
	"flag"
	"os"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Main is the plugin executable: it reads its flags and serves the
// backend to mirrord until mirrord ends it.
func Main() {
	stateDir := flag.String("state-dir", "/var/lib/mirrord/ceph", "directory for confs, keyrings, rbd-mirror sockets, pid files and logs")
	callLog := flag.String("call-log", "", "append each call that changes the storage to this file, before and after it (calllog.go; for tests)")
	flag.Parse()
	log := sdk.Logger()
	b := New(log, *stateDir)
	if err := ensureDir(*stateDir); err != nil {
		log.Error("cannot create the state directory", "dir", *stateDir, "error", err)
	}
	if *callLog == "" {
		sdk.Serve(b)
		return
	}
	logged, err := withCallLog(b, log, *callLog)
	if err != nil {
		// Asked for, the log is what the caller checks: serving without
		// it would report no calls, not the calls made.
		log.Error("cannot open the call log", "file", *callLog, "error", err)
		os.Exit(1)
	}
	sdk.Serve(logged)
}
