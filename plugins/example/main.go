// Command mirror-plugin-example is the smallest mirror storage plugin: it
// serves the storage type openstack.storage.type.example with memstorage,
// the SDK's in-memory backend. Copy this module to start a plugin of your
// own, and replace memstorage.New with your sdk.Backend.
//
// mirrord starts it from its plugin directory; run by hand, it says so and
// exits. Every volume and snapshot of a storage whose metadata lists none
// exists on its source (memstorage.AutoSource), so mirrord can replicate
// any volume with it; nothing survives a restart.
package main

import (
	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// StorageType is the storage type this plugin serves.
const StorageType = "openstack.storage.type.example"

func main() {
	sdk.Serve(memstorage.New(memstorage.Types(StorageType), memstorage.AutoSource()))
}
