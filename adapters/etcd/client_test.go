package etcd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/etcd/etcdtest"
)

func TestNewClientAuth(t *testing.T) {
	s := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	enableAuth(ctx, t, s.Client(t), "cdm", "correct-horse-battery")

	// etcd checks each password with bcrypt, slow under -race on a busy
	// machine: a dial that times out first would hide the auth error.
	cfg := etcd.Config{Endpoints: s.Endpoints(), Username: "cdm", Password: "correct-horse-battery", DialTimeout: 30 * time.Second}
	c, closeClient, err := etcd.NewClient(cfg, quiet())
	if err != nil {
		t.Fatalf("NewClient with the right password: %v", err)
	}
	defer closeClient()
	kv := etcd.NewKV(c)
	if _, err := kv.Put(ctx, "mirror_volume/x", []byte("v")); err != nil {
		t.Fatalf("put as cdm: %v", err)
	}
	e, err := etcd.NewElection(c, "d1", "mirror_leader/", 0, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(ctx); err != nil {
			t.Errorf("close election as cdm: %v", err)
		}
	}()
	if _, err := e.TryCampaign(ctx, "mirror_leader/x"); err != nil {
		t.Fatalf("campaign as cdm: %v", err)
	}

	cfg.Password = "wrong-password-123"
	_, _, err = etcd.NewClient(cfg, quiet())
	if err == nil {
		t.Fatal("NewClient with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), cfg.Password) {
		t.Fatalf("error %q contains the password", err)
	}
	if !strings.Contains(err.Error(), "authentication failed") || !strings.Contains(err.Error(), `"cdm"`) {
		t.Fatalf("error %q does not say which user failed to authenticate", err)
	}
	t.Logf("wrong password: %v", err)
}

// enableAuth creates root and user with read-write on every key, and turns
// auth on.
func enableAuth(ctx context.Context, t *testing.T, c *clientv3.Client, user, password string) {
	t.Helper()
	steps := []func() error{
		func() error { _, err := c.RoleAdd(ctx, "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "root", "root-pw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "mirror-rw"); return err },
		func() error {
			// "\x00" to "\x00" is the whole key range, as etcdctl --prefix "".
			_, err := c.RoleGrantPermission(ctx, "mirror-rw", "\x00", "\x00", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, user, password); return err },
		func() error { _, err := c.UserGrantRole(ctx, user, "mirror-rw"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
}
