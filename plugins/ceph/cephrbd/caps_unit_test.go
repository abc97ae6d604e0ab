package cephrbd

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Without admin credentials the client is the most privileged user; one
// of the two without the other is refused, naming both.
func TestParseMetaAdminOptional(t *testing.T) {
	md := fullMeta()
	delete(md, "admin_client")
	delete(md, "admin_keyring")
	m, err := parseMeta(storage(md))
	if err != nil {
		t.Fatal(err)
	}
	if m.adminGiven || m.AdminClient != "cinder" || m.AdminKeyring != secret {
		t.Fatalf("without admin: adminGiven %v, admin user %q; want the client", m.adminGiven, m.AdminClient)
	}
	if m, err := parseMeta(storage(fullMeta())); err != nil || !m.adminGiven || m.AdminClient != "admin" {
		t.Fatalf("with admin: %+v, %v", m.adminGiven, err)
	}
	for _, only := range []string{"admin_client", "admin_keyring"} {
		md := fullMeta()
		for _, f := range []string{"admin_client", "admin_keyring"} {
			if f != only {
				delete(md, f)
			}
		}
		_, err := parseMeta(storage(md))
		if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "give both or neither") {
			t.Errorf("only %s: %v; want ErrPrecondition asking for both or neither", only, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error quotes a secret: %v", err)
		}
	}
}

func TestBareKey(t *testing.T) {
	for _, c := range []struct{ keyring, want string }{
		{" " + secret + "\n", secret},
		{"[client.cinder]\n\tkey = " + secret + "\n", secret},
		{"[client.other]\n\tkey = AQBother==\n[client.cinder]\n\tkey = " + secret + "\n\tcaps mon = \"profile rbd\"\n", secret},
		{"[client.other]\n\tkey = AQBother==\n", "AQBother=="},
		{"[client.cinder]\n", ""},
	} {
		if got := bareKey("client.cinder", c.keyring); got != c.want {
			t.Errorf("bareKey(%q) = %q, want %q", c.keyring, got, c.want)
		}
	}
}

func TestDeniedNamesUserStorageAndCaps(t *testing.T) {
	m, err := parseMeta(storage(map[string]any{"pool": "volumes", "conf": "x", "client": "cinder", "keyring": secret}))
	if err != nil {
		t.Fatal(err)
	}
	sd := side{s: storage(nil), m: m}
	err = denied(rados.ErrPermissionDenied, sd, true, roleTarget, "set a peer", "mon 'profile rbd-mirror-peer'")
	if !errors.Is(err, sdk.ErrPrecondition) || !isErrno(err, syscall.EPERM) {
		t.Fatalf("denied = %v; want ErrPrecondition keeping the errno", err)
	}
	for _, w := range []string{"client.cinder", "clusters.6.storages.13", "set a peer", "lacks mon 'profile rbd-mirror-peer'",
		"`ceph auth caps client.cinder mon '" + targetMonCaps + "' osd 'profile rbd pool=volumes'`"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("denied does not say %q: %v", w, err)
		}
	}
	if other := errors.New("timed out"); denied(other, sd, true, roleTarget, "x", "") != other {
		t.Error("denied changed an error that is no refusal")
	}
}

func TestPoolRoom(t *testing.T) {
	for _, c := range []struct {
		r        poolRoom
		left     uint64
		fullSays string
	}{
		{poolRoom{MaxAvail: 100}, 100, ""},
		{poolRoom{MaxAvail: 100, QuotaBytes: 50, Stored: 20}, 30, ""},
		{poolRoom{MaxAvail: 10, QuotaBytes: 50, Stored: 20}, 10, ""},
		{poolRoom{MaxAvail: 100, QuotaBytes: 50, Stored: 60}, 0, "quota of 50 bytes"},
		{poolRoom{MaxAvail: 100, QuotaObjects: 3, Objects: 3}, 100, "quota of 3 objects"},
		{poolRoom{MaxAvail: 0}, 0, "is full"},
	} {
		if got := c.r.left(); got != c.left {
			t.Errorf("%+v: left %d, want %d", c.r, got, c.left)
		}
		if got := c.r.full(); (c.fullSays == "") != (got == "") || !strings.Contains(got, c.fullSays) {
			t.Errorf("%+v: full %q, want %q", c.r, got, c.fullSays)
		}
	}
	if got := sizeText(16 << 20); got != "16 MiB (16777216 bytes)" {
		t.Errorf("sizeText = %q", got)
	}
}

// A refusal whose side the call does not know names the side its
// message names, or both sides' users and capabilities.
func TestExplainDenied(t *testing.T) {
	md := map[string]any{"pool": "volumes", "conf": "x", "client": "cinder", "keyring": secret}
	env := sdk.Environment{ID: "storage.11.13", Source: storage(md), Target: storage(md)}
	env.Source.ClusterID, env.Source.StorageID = 5, 11
	refused := fmt.Errorf("protect snapshot on storage clusters.5.storages.11: %w", rados.ErrPermissionDenied)
	err := explainDenied(refused, env, false)
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "client.cinder on storage clusters.5.storages.11 (the source)") ||
		!strings.Contains(err.Error(), "`ceph auth caps client.cinder mon '"+sourceMonCaps+"'") || strings.Contains(err.Error(), "(the target)") {
		t.Errorf("one side named: %v", err)
	}
	err = explainDenied(fmt.Errorf("somewhere: %w", rados.ErrPermissionDenied), env, false)
	for _, w := range []string{"clusters.5.storages.11 (the source) needs", "clusters.6.storages.13 (the target) needs"} {
		if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), w) {
			t.Errorf("no side named: %v; want %q", err, w)
		}
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the explanation quotes a secret: %v", err)
	}
}
