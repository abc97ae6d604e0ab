package config

import (
	"bytes"
	"flag"
	"slices"
	"testing"
)

// mirrorctl's names may come before, between and after its flags.
func TestLoadArgsInterspersed(t *testing.T) {
	var output string
	var watch bool
	extra := func(fs *flag.FlagSet) {
		fs.StringVar(&output, "o", "table", "")
		fs.BoolVar(&watch, "watch", false, "")
	}
	cfg, rest, err := LoadArgs("mirrorctl get", []string{"volumes", "-o", "json", "storage.11.13", "--watch", "--etcd-endpoints", "a:1,b:2", "storage.1.2", "--leader-prefix=x/", "--", "-odd"},
		func(string) string { return "" }, &bytes.Buffer{}, extra)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"volumes", "storage.11.13", "storage.1.2", "-odd"}; !slices.Equal(rest, want) {
		t.Errorf("arguments = %q, want %q", rest, want)
	}
	if output != "json" || !watch || !slices.Equal(cfg.Etcd.Endpoints, []string{"a:1", "b:2"}) || cfg.Etcd.LeaderPrefix != "x/" {
		t.Errorf("flags after an argument lost: -o %q, --watch %v, endpoints %q, leader prefix %q", output, watch, cfg.Etcd.Endpoints, cfg.Etcd.LeaderPrefix)
	}
	if _, err := LoadFor("mirrord", []string{"stray"}, func(string) string { return "" }, &bytes.Buffer{}, nil); err == nil {
		t.Error("LoadFor accepted an argument")
	}
}
