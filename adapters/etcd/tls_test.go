package etcd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/cdmdr/mirror/adapters/etcd"
)

func TestNewClientTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTLSCA(t, "mirror test CA")
	ca.writeCert(t, filepath.Join(dir, "ca.pem"))
	ca.issue(t, dir, "server", true)
	ca.issue(t, dir, "client", false)
	other := newTLSCA(t, "unrelated CA")
	other.writeCert(t, filepath.Join(dir, "other-ca.pem"))

	endpoint := startTLSEtcd(t, dir)

	t.Run("mutual TLS", func(t *testing.T) {
		c, closeClient, err := etcd.NewClient(etcd.Config{
			Endpoints:   []string{endpoint},
			CAFile:      filepath.Join(dir, "ca.pem"),
			CertFile:    filepath.Join(dir, "client.pem"),
			KeyFile:     filepath.Join(dir, "client-key.pem"),
			DialTimeout: 5 * time.Second,
		}, quiet())
		if err != nil {
			t.Fatalf("NewClient: %v", err)
		}
		t.Cleanup(closeClient)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		kv := etcd.NewKV(c)
		if _, err := kv.Put(ctx, "mirror_volume/tls", []byte("secret")); err != nil {
			t.Fatalf("put over TLS: %v", err)
		}
		got, err := kv.Get(ctx, "mirror_volume/tls")
		if err != nil {
			t.Fatalf("get over TLS: %v", err)
		}
		if string(got.Value) != "secret" {
			t.Fatalf("get over TLS = %q, want %q", got.Value, "secret")
		}
	})

	failing := []struct {
		name string
		cfg  etcd.Config
	}{
		{"no client certificate", etcd.Config{
			CAFile: filepath.Join(dir, "ca.pem"),
		}},
		{"wrong CA", etcd.Config{
			CAFile:   filepath.Join(dir, "other-ca.pem"),
			CertFile: filepath.Join(dir, "client.pem"),
			KeyFile:  filepath.Join(dir, "client-key.pem"),
		}},
	}
	for _, tc := range failing {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Endpoints = []string{endpoint}
			tc.cfg.DialTimeout = 2 * time.Second
			c, closeClient, err := etcd.NewClient(tc.cfg, quiet())
			if err != nil {
				t.Logf("NewClient failed: %v", err)
				return
			}
			t.Cleanup(closeClient)
			kv := etcd.NewKV(c)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if _, err := kv.Put(ctx, "mirror_volume/tls-"+tc.name, []byte("v")); err == nil {
				t.Fatal("put succeeded")
			} else {
				t.Logf("put failed: %v", err)
			}
			ctx, cancel = context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if _, err := kv.Get(ctx, "mirror_volume/tls"); err == nil {
				t.Fatal("get succeeded")
			}
		})
	}
}

// startTLSEtcd starts an embedded etcd on 127.0.0.1 serving clients over
// https with the server certificate in dir and requiring client
// certificates signed by dir's CA. It is closed at t's cleanup and returns
// the client URL.
func startTLSEtcd(t *testing.T, dir string) string {
	t.Helper()
	var lastErr error
	for range 3 { // a free port can be taken between choosing and binding it
		cp, pp := tlsFreePort(t), tlsFreePort(t)
		curl := url.URL{Scheme: "https", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(cp))}
		purl := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(pp))}
		cfg := embed.NewConfig()
		cfg.Name = "tls-test"
		cfg.Dir = filepath.Join(t.TempDir(), "etcd")
		cfg.ListenClientUrls = []url.URL{curl}
		cfg.AdvertiseClientUrls = []url.URL{curl}
		cfg.ListenPeerUrls = []url.URL{purl}
		cfg.AdvertisePeerUrls = []url.URL{purl}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       filepath.Join(dir, "server.pem"),
			KeyFile:        filepath.Join(dir, "server-key.pem"),
			TrustedCAFile:  filepath.Join(dir, "ca.pem"),
			ClientCertAuth: true,
		}
		cfg.LogLevel = "error"
		// Stopping logs errors about closed listeners: noise here.
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.EnableGRPCGateway = false

		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			e.Close()
			t.Fatalf("embedded etcd with TLS: %v", err)
		case <-time.After(30 * time.Second):
			e.Server.Stop()
			e.Close()
			t.Fatal("embedded etcd with TLS: not ready within 30s")
		}
		// Registered first, so it runs after the clients' cleanups: the
		// server waits for open streams when it stops.
		t.Cleanup(e.Close)
		return curl.String()
	}
	t.Fatalf("embedded etcd with TLS: %v", lastErr)
	return ""
}

// tlsFreePort returns a port of 127.0.0.1 free at the time of the call.
func tlsFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

type tlsCA struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newTLSCA(t *testing.T, name string) *tlsCA {
	t.Helper()
	key := newTLSKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          tlsSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tlsCA{cert: cert, der: der, key: key}
}

func (ca *tlsCA) writeCert(t *testing.T, path string) {
	t.Helper()
	writeTLSPEM(t, path, "CERTIFICATE", ca.der)
}

// issue writes dir/name.pem and dir/name-key.pem: a certificate signed by
// ca, for 127.0.0.1 if server, for client authentication otherwise.
func (ca *tlsCA) issue(t *testing.T, dir, name string, server bool) {
	t.Helper()
	key := newTLSKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: tlsSerial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeTLSPEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	writeTLSPEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", keyDER)
}

func newTLSKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func tlsSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeTLSPEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
