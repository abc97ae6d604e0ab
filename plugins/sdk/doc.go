// Package sdk is everything a storage vendor imports to add an OpenStack
// storage type to mirror: the Backend interface a plugin implements, in
// plain Go types, the errors the daemon acts on (all given again from
// package contract, where the daemon reads the same text), and Serve,
// which a plugin's main calls.
//
//	func main() { sdk.Serve(mybackend.New()) }
//
// A plugin is a separate executable the daemon (mirrord) starts from its
// plugin directory and speaks to over gRPC through hashicorp/go-plugin,
// with mutual TLS. The SDK is its own Go module: a plugin never depends on
// the daemon. plugintest is the conformance kit a plugin must pass;
// memstorage is an in-memory reference backend that passes it.
//
// See docs/writing-a-plugin.md in the mirror repository.
package sdk
