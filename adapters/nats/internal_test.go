package nats

import (
	"strings"
	"testing"
)

func TestSubsetOf(t *testing.T) {
	for _, tc := range []struct {
		subject, filter string
		want            bool
	}{
		{"cdm.cluster.volume_snapshot.created", "cdm.cluster.volume_snapshot.>", true},
		{"cdm.cluster.volume_snapshot.created", "cdm.cluster.volume_snapshot.created", true},
		{"cdm.cluster.volume_snapshot.created", "cdm.cluster.*.created", true},
		{"cdm.cluster.volume_snapshot.*", "cdm.cluster.volume_snapshot.>", true},
		{"cdm.cluster.volume_snapshot.>", "cdm.cluster.volume_snapshot.>", true},
		{"cdm.cluster.volume_snapshot.>", "cdm.cluster.volume_snapshot.*", false},
		{"cdm.cluster.volume_snapshot.*", "cdm.cluster.volume_snapshot.created", false},
		{"cdm.cluster.volume_snapshot", "cdm.cluster.volume_snapshot.>", false},
		{"cdm.cluster.volume_snapshot.created.x", "cdm.cluster.volume_snapshot.*", false},
		{"cdm.dr.mirror.event", "cdm.cluster.volume_snapshot.>", false},
		{"a", ">", true},
		{"a.b", "a", false},
	} {
		if got := subsetOf(tc.subject, tc.filter); got != tc.want {
			t.Errorf("subsetOf(%q, %q) = %v, want %v", tc.subject, tc.filter, got, tc.want)
		}
	}
}

func TestValidSubject(t *testing.T) {
	for s, want := range map[string]bool{
		"a.b.c": true, "a.*.c": true, "a.>": true, ">": true,
		"": false, "a..b": false, ".a": false, "a.": false, "a.>.b": false, "a b": false, "a.b*": false,
	} {
		if got := validSubject(s); got != want {
			t.Errorf("validSubject(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestConsumerName(t *testing.T) {
	a := consumerName("mirrord-snapshots-created", "cdm.cluster.volume_snapshot.created")
	if !strings.HasPrefix(a, "mirrord-snapshots-created_") {
		t.Errorf("consumer name %q does not start with the durable name", a)
	}
	if b := consumerName("mirrord-snapshots-created", "cdm.cluster.volume_snapshot.deleted"); a == b {
		t.Errorf("one durable name on two subjects shares consumer %q", a)
	}
	if c := consumerName("a.b c>*/\\", "s"); strings.ContainsAny(c, ".  >*/\\") {
		t.Errorf("consumer name %q keeps characters NATS refuses", c)
	}
}

func TestRedactURL(t *testing.T) {
	got := redactURL("nats://user:s3cret@h1:4222, nats://t0ken@h2:4222,nats://h3:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, "t0ken") {
		t.Fatalf("redactURL left a secret: %s", got)
	}
	if !strings.Contains(got, "user") || !strings.Contains(got, "h3:4222") {
		t.Fatalf("redactURL lost more than the secrets: %s", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Mode != ModeAuto || c.Stream != DefaultStream || len(c.StreamSubjects) != 1 || c.StreamSubjects[0] != DefaultStreamSubject {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	c.StreamSubjects = []string{"a..b"}
	if err := c.validate(); err == nil {
		t.Fatal("an invalid stream subject passed")
	}
}
