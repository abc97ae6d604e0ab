// Package pb is the generated gRPC code of the plugin protocol
// (backend.proto). Regenerate with `make generate` (protoc from Debian's
// protobuf-compiler, the Go plugins from the module proxy).
package pb

//go:generate sh -c "GOBIN=$(mktemp -d) && go install google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc && PATH=$GOBIN:$PATH protoc --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. backend.proto"
