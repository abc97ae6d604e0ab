// Command mirror-plugin-nfs is mirrord's storage plugin for file volumes
// (openstack.storage.type.nfs): it copies each volume file from the
// source share, read through the mirror-agent next to it, into the target
// share by delta sync. The plugin is the library package nfsfile.
package main

import (
	"github.com/cdmdr/mirror/plugins/nfs/nfsfile"
	"github.com/cdmdr/mirror/plugins/sdk"
)

func main() {
	b := nfsfile.New(nfsfile.Options{Logger: sdk.Logger()})
	defer b.Close()
	sdk.Serve(b)
}
