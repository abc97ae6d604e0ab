// Package pluginhost is the daemon's side of storage plugins: it loads
// the plugins of a directory, keeps their processes running, and serves
// each storage type through ports.Backends with the plugin claiming it,
// wrapped as a plain ports.StorageBackend.
//
// Every regular, executable, non-hidden file of the directory but
// SHA256SUMS is a plugin, started through hashicorp/go-plugin with the
// SDK's handshake, gRPC only, mutual TLS, and an environment holding PATH
// and nothing else of the daemon's. The operator's settings for a plugin
// (Config.Plugins, by file name) add arguments and environment variables,
// at its first start and every restart; settings naming no file of the
// directory are warned about. A plugin is refused, and the others
// keep serving, when its file is world-writable, when SHA256SUMS exists
// and does not list it with its checksum, when it fails the handshake or
// speaks another protocol version, or when its Info names no storage
// type. Nothing is loaded from a world-writable directory. The checksum
// verified at load is pinned: go-plugin checks it again at every start.
// A refused file is considered again once it (or SHA256SUMS) changes.
//
// A storage type claimed by two plugins is served by neither; For says
// so. Each call is bounded by the call timeout and the caller's context;
// the plugin's errors become the ports' (ErrNotFound, ErrPrecondition,
// ErrInProgress, ErrRetryable) with the plugin's message. A plugin whose
// process died fails the call with ErrRetryable and is started again at
// once. The host never logs what it passes to plugins: storage metadata
// holds keyrings.
package pluginhost
