module github.com/cdmdr/mirror/plugins/nfs

go 1.26

replace github.com/cdmdr/mirror/plugins/sdk => ../sdk

require (
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.47.0
)
