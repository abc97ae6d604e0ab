package cephrbd

import (
	"errors"
	"strings"
	"testing"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

func TestFeedSameCluster(t *testing.T) {
	b := feed{TargetSite: "site-b", TargetFSID: "f-b"}
	for _, c := range []struct {
		other feed
		want  bool
	}{
		{feed{TargetSite: "site-b", TargetFSID: "f-b"}, true},
		{feed{TargetSite: "renamed", TargetFSID: "f-b"}, true}, // the fsid decides
		{feed{TargetSite: "site-c", TargetFSID: "f-c"}, false},
		{feed{TargetSite: "site-b"}, true}, // a record without fsid: the site name
		{feed{TargetSite: "site-c"}, false},
	} {
		if got := b.sameCluster(c.other); got != c.want {
			t.Errorf("sameCluster(%+v) = %v, want %v", c.other, got, c.want)
		}
	}
}

// The refusals name what holds the pool, say why, and what to change.
func TestLayoutRefusalTexts(t *testing.T) {
	src := side{s: sdk.Storage{ClusterID: 5, StorageID: 11}, m: meta{Pool: "volumes"}}
	held := feed{Environment: "storage.11.13", Target: "clusters.6.storages.13", TargetSite: "fsid-b", TargetFSID: "fsid-b", TargetPool: "volumes"}
	me := feed{Environment: "storage.11.14", Target: "clusters.6.storages.14", TargetSite: "fsid-c", TargetFSID: "fsid-c", TargetPool: "volumes"}
	err := refuseFeed(src, held, me, "environment storage.11.14 would add")
	peers := refuseTxPeers(src, me, []*rbd.MirrorPeerSite{{UUID: "u-1", SiteName: "fsid-b", Direction: rbd.MirrorPeerDirectionTx}}, "environment storage.11.14 would add")
	for _, c := range []struct {
		err  error
		want []string
	}{
		{err, []string{"storage.11.13", "clusters.6.storages.13", "site fsid-b", "site fsid-c", "every mirror-enabled image", "dr-x", "rados -p volumes rm mirror.feed"}},
		{peers, []string{"site \"fsid-b\"", "u-1", "site fsid-c", "dr-x", "rbd mirror pool peer remove volumes u-1"}},
	} {
		if !errors.Is(c.err, sdk.ErrPrecondition) {
			t.Errorf("%v: not a precondition error", c.err)
		}
		for _, w := range c.want {
			if !strings.Contains(c.err.Error(), w) {
				t.Errorf("refusal %q lacks %q", c.err, w)
			}
		}
	}
}

// An Unintended entry names the copy, its storage, its origin and a
// remedy that removes that copy alone.
func TestUnintendedLine(t *testing.T) {
	src := side{s: sdk.Storage{ClusterID: 5, StorageID: 11}, m: meta{Pool: "volumes"}}
	dst := side{s: sdk.Storage{ClusterID: 6, StorageID: 14}, m: meta{Pool: "volumes"}}
	got := unintendedLine(src, dst, "site-a", "storage.11.14", "volume-31", "storage.11.13")
	for _, w := range []string{"volumes/volume-31 on storage clusters.6.storages.14", "clusters.5.storages.11", "environment storage.11.13",
		"`rbd mirror image disable --force volumes/volume-31`", "`rbd rm volumes/volume-31`"} {
		if !strings.Contains(got, w) {
			t.Errorf("entry %q lacks %q", got, w)
		}
	}
	if unmarked := unintendedLine(src, dst, "site-a", "storage.11.14", "volume-9", ""); !strings.Contains(unmarked, "no environment mark") {
		t.Errorf("unmarked entry %q does not say it has no mark", unmarked)
	}
}
