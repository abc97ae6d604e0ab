package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// serveRawMTLS serves be's gRPC service without go-plugin: on the unix
// socket dir/plugin.sock, with mutual TLS configured as go-plugin's
// AutoMTLS configures it (dir/server.crt and server.key its own
// certificate, dir/client.crt the only client certificate it accepts).
// It is the floor the host's benchmark compares its path with. It says
// "ready" on stdout once listening, and exits when stdin closes, so that
// it never outlives the benchmark that started it.
func serveRawMTLS(be sdk.Backend, dir string) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return err
	}
	clientPEM, err := os.ReadFile(filepath.Join(dir, "client.crt"))
	if err != nil {
		return err
	}
	clients := x509.NewCertPool()
	if !clients.AppendCertsFromPEM(clientPEM) {
		return errors.New("client.crt holds no certificate")
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients,
		RootCAs:      clients,
		MinVersion:   tls.VersionTLS12,
		ServerName:   "localhost",
	})))
	if err := (&sdk.BackendPlugin{Impl: be}).GRPCServer(nil, srv); err != nil {
		return err
	}
	lis, err := net.Listen("unix", filepath.Join(dir, "plugin.sock"))
	if err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		srv.Stop()
	}()
	fmt.Println("ready")
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
