// Command testplugin is the plugin the host's tests load: memstorage
// served through the SDK, or, by -mode, a plugin that misbehaves. The
// host hides its environment from plugins, so tests drive it by flags
// through a wrapper script.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// blocking serves memstorage, but VolumeStatus of a volume whose UUID
// starts with "block-" answers only when its context ends, so that a test
// can kill the process during a call.
type blocking struct {
	*memstorage.Backend
}

func (b blocking) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	if strings.HasPrefix(vol.VolumeUUID, "block-") {
		sdk.Logger().Info("testplugin blocking", "volume_uuid", vol.VolumeUUID)
		<-ctx.Done()
		return sdk.VolumeReplication{}, ctx.Err()
	}
	return b.Backend.VolumeStatus(ctx, vol)
}

func main() {
	mode := flag.String("mode", "serve", "serve, rawmtls, rawplain, wrongversion, notplugin or crash")
	types := flag.String("types", memstorage.DefaultType, "comma-separated storage types served")
	rawDir := flag.String("raw-dir", "", "rawmtls, rawplain: the directory of the socket (and certificates)")
	flag.Parse()
	be := blocking{memstorage.New(memstorage.Types(strings.Split(*types, ",")...), memstorage.AutoSource())}
	switch *mode {
	case "serve":
		var env []string
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			env = append(env, name)
		}
		sdk.Logger().Info("testplugin serving", "storage_types", *types, "env", strings.Join(env, ","))
		sdk.Serve(be)
	case "rawmtls", "rawplain":
		if err := serveRaw(be, *rawDir, *mode == "rawmtls"); err != nil {
			fmt.Fprintln(os.Stderr, "testplugin:", err)
			os.Exit(1)
		}
	case "wrongversion":
		hs := sdk.Handshake
		hs.ProtocolVersion = sdk.ProtocolVersion + 1
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion + 1: {sdk.PluginName: &sdk.BackendPlugin{Impl: be}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
	case "notplugin":
		fmt.Println("hello, I am not a plugin")
	case "crash":
		fmt.Fprintln(os.Stderr, "panic: testplugin crashes at start")
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", *mode)
		os.Exit(2)
	}
}
