// Command mirror-plugin-example is the smallest mirror storage plugin: it
// serves the storage type openstack.storage.type.example with memstorage,
// the SDK's in-memory backend. Copy this module to start a plugin of your
// own, and replace memstorage.New with your sdk.Backend.
//
// mirrord starts it from its plugin directory; run by hand, it says so and
// exits. Every volume and snapshot of a storage whose metadata lists none
// exists on its source (memstorage.AutoSource), so mirrord can replicate
// any volume with it; nothing survives a restart, unless its settings
// give it a state directory (--state-dir, durable.go), which the tests
// use to kill the daemon and its plugin and find the storage as it was.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// StorageType is the storage type this plugin serves.
const StorageType = "openstack.storage.type.example"

func main() {
	fs := flag.NewFlagSet("mirror-plugin-example", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "keep the storage's volumes in this directory, shared by every process given it")
	callLog := fs.Bool("call-log", false, "with --state-dir: append each call that changes the storage to calls.log there")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	opts := []memstorage.Option{memstorage.Types(StorageType), memstorage.AutoSource()}
	if *stateDir == "" {
		sdk.Serve(memstorage.New(opts...))
		return
	}
	b, err := newDurable(*stateDir, *callLog, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mirror-plugin-example:", err)
		os.Exit(1)
	}
	sdk.Serve(b)
}
