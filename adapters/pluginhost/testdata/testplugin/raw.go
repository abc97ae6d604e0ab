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

// serveRaw serves be's gRPC service without go-plugin, on the unix socket
// dir/plugin.sock: for the host's benchmark, the floor it compares its
// path with (mTLS) and what TLS adds to it (not mTLS). It says "ready" on
// stdout once listening, and exits when stdin closes, so that it never
// outlives the benchmark that started it.
func serveRaw(be sdk.Backend, dir string, mTLS bool) error {
	var opts []grpc.ServerOption
	if mTLS {
		creds, err := serverMTLS(dir)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(opts...)
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

// serverMTLS is mutual TLS configured as go-plugin's AutoMTLS configures
// a plugin's: dir/server.crt and server.key its own certificate,
// dir/client.crt the only client certificate it accepts.
func serverMTLS(dir string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return nil, err
	}
	clientPEM, err := os.ReadFile(filepath.Join(dir, "client.crt"))
	if err != nil {
		return nil, err
	}
	clients := x509.NewCertPool()
	if !clients.AppendCertsFromPEM(clientPEM) {
		return nil, errors.New("client.crt holds no certificate")
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clients,
		RootCAs:      clients,
		MinVersion:   tls.VersionTLS12,
		ServerName:   "localhost",
	}), nil
}
