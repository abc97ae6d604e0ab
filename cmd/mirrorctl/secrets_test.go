package main

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/test/secretscan"
)

// metadataWithKeyring is a storage's metadata as the cluster manager
// writes it, keyring included: nothing mirrorctl or mirrord prints or
// writes may hold it.
var metadataWithKeyring = `{"pool":"volumes","client":"cinder","keyring":"` + secretscan.Known[0].Value + `"}`

// watchSecrets makes the fixture fail its test when a test secret is in
// what mirrorctl printed (each run scanned by runWith), in a log the
// test routes through f.secrets, or in any value ever written to etcd
// outside the storage metadata, read from etcd's history at the end of
// the test.
func (f *fixture) watchSecrets() {
	f.secrets = secretscan.New()
	// Registered after etcd started: runs before it stops, and after
	// what the test starts later (a daemon) stopped.
	f.t.Cleanup(func() {
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cli := f.cli
		if f.scanCli != nil { // etcd's auth is on
			cli = f.scanCli
			defer f.scanCli.Close()
		}
		if err := f.secrets.ScanEtcd(ctx, cli); err != nil {
			f.t.Errorf("scan etcd for secrets: %v", err)
		}
		f.secrets.Report(f.t)
		f.t.Logf("secret scan of etcd's history took %s", time.Since(began).Round(time.Millisecond))
	})
}

// scanAsRoot makes the end-of-test scan read etcd as root, once a test
// turned etcd's auth on. The scan closes the client.
func (f *fixture) scanAsRoot(password string) {
	f.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: f.srv.Endpoints(), Username: "root", Password: password, DialTimeout: 30 * time.Second})
	if err != nil {
		f.t.Fatalf("etcd client as root: %v", err)
	}
	f.scanCli = cli
}

// scannedRun is runWith's result, its output scanned for the test
// secrets and for the values of the variables that name a password or a
// token.
func scannedRun(t *testing.T, vars map[string]string, args []string, r result) result {
	t.Helper()
	var extra []secretscan.Secret
	for k, v := range vars {
		if strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") {
			extra = append(extra, secretscan.Secret{Name: k, Value: v})
		}
	}
	where := "the output of mirrorctl " + strings.Join(args, " ")
	secretscan.Check(t, where, []byte(r.stdout+"\n"+r.stderr), extra...)
	return r
}
