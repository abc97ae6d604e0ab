package sdk

import plugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the plugin protocol this SDK speaks. History:
//
//	1: the Backend service of internal/pb/backend.proto. VolumeStatuses
//	   was added to it later: a plugin built before answers it
//	   Unimplemented, and the client asks VolumeStatus of each volume.
//	   Volume.source_agent and Capabilities.pairing_on_target_only were
//	   added later: a plugin built before ignores the one and leaves
//	   the other false.
//
// A plugin built with an SDK of another protocol version is refused by the
// daemon with an error naming both versions. Within a version, changes are
// additive only.
const ProtocolVersion = 1

// PluginName is the name the daemon dispenses a backend by.
const PluginName = "storage"

// Handshake is shared by the daemon and every plugin. The magic cookie is
// not a security measure: it only makes a plugin executable run by hand say
// it must be started by mirrord instead of waiting for a handshake.
// Security is mutual TLS (go-plugin AutoMTLS) and, when the operator pins
// them, the binaries' SHA-256 checksums.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "MIRROR_STORAGE_PLUGIN",
	MagicCookieValue: "6f1c0a5e9d3b47e2a8c4b1f07d2e9a53c6b8f4e1a0d7c2b9e5f3a1d8c6b4e2f0",
}

// PluginSets maps each protocol version to the plugins served under it,
// for go-plugin's VersionedPlugins on both sides.
func PluginSets(b Backend) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &BackendPlugin{Impl: b}},
	}
}
