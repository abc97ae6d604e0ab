module github.com/cdmdr/mirror/plugins/nfs

go 1.26

require (
	github.com/lmittmann/tint v1.2.1
	go.uber.org/goleak v1.3.0
)

replace github.com/cdmdr/mirror/plugins/sdk => ../sdk
