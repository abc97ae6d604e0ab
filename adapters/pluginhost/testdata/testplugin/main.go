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
	"path/filepath"
	"strings"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// blocking serves memstorage, but VolumeStatus of a volume whose UUID
// starts with "block-" answers only when its context ends, so that a test
// can kill the process during a call. VolumeStatuses does the same when
// any of its volumes is such, fails with ErrNotFound when one's UUID
// starts with "notfound-", and answers one volume short when one's starts
// with "short-".
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

func (b blocking) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	for _, vol := range vols {
		switch {
		case strings.HasPrefix(vol.VolumeUUID, "block-"):
			sdk.Logger().Info("testplugin blocking", "volume_uuid", vol.VolumeUUID)
			<-ctx.Done()
			return nil, ctx.Err()
		case strings.HasPrefix(vol.VolumeUUID, "notfound-"):
			return nil, fmt.Errorf("testplugin: no pool for volume %s: %w", vol.VolumeUUID, sdk.ErrNotFound)
		case strings.HasPrefix(vol.VolumeUUID, "short-"):
			reps, err := b.Backend.VolumeStatuses(ctx, env, vols)
			return reps[1:], err
		}
	}
	return b.Backend.VolumeStatuses(ctx, env, vols)
}

// Info logs integers, as the host's tests of the plugin log want: by
// then the plugin is served, so its stderr reaches the host through
// go-plugin's stdio stream.
func (b blocking) Info(ctx context.Context) (sdk.Info, error) {
	sdk.Logger().Info("testplugin info", "bytes", 8388608, "big", int64(1)<<62+1, "ratio", 0.5)
	return b.Backend.Info(ctx)
}

// refuseVolumeStatuses answers VolumeStatuses as a plugin built before it
// existed does.
func refuseVolumeStatuses(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.HasSuffix(info.FullMethod, "/VolumeStatuses") {
		sdk.Logger().Info("testplugin has no VolumeStatuses")
		return nil, status.Error(codes.Unimplemented, "unknown method VolumeStatuses")
	}
	return handler(ctx, req)
}

func main() {
	mode := flag.String("mode", "serve", "serve, old (without VolumeStatuses), rawmtls, rawplain, wrongversion, notplugin or crash")
	types := flag.String("types", memstorage.DefaultType, "comma-separated storage types served")
	rawDir := flag.String("raw-dir", "", "rawmtls, rawplain: the directory of the socket (and certificates)")
	echoEnv := flag.String("echo-env", "", "serve: log the value of this environment variable (a test's settings)")
	faults := flag.String("faults", "", "serve: the directory of armed hangs; misbehave as faulty says")
	flag.Parse()
	be := blocking{memstorage.New(memstorage.Types(strings.Split(*types, ",")...), memstorage.AutoSource())}
	switch *mode {
	case "serve":
		var env []string
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			env = append(env, name)
		}
		sdk.Logger().Info("testplugin serving", "storage_types", *types, "env", strings.Join(env, ","),
			"args", strings.Join(os.Args[1:], " "), "echo", os.Getenv(*echoEnv), "bytes", 8388608)
		if *faults != "" {
			serveFaulty(faulty{blocking: be, dir: *faults, journal: &journal{path: filepath.Join(*faults, "journal")}})
			return
		}
		sdk.Serve(be)
	case "old":
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  sdk.Handshake,
			VersionedPlugins: sdk.PluginSets(be),
			GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
				return grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(refuseVolumeStatuses))...)
			},
		})
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
