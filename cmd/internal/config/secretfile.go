package config

import (
	"fmt"
	"maps"
	"os"
	"slices"
)

// checkPrivate refuses a file holding a secret that anyone on the host
// may read or change, or that its group may change. The layout
// deploy/systemd/mirrord.service describes (root-owned, mode 0640, group
// mirrord) passes; so does 0600. what says what the file holds.
func checkPrivate(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o007 != 0:
		return fmt.Errorf("%s %s has mode %04o: anyone on this host may read or change it; make it 0600, or 0640 with group mirrord (chmod o-rwx %s)", what, path, perm, path)
	case perm&0o020 != 0:
		return fmt.Errorf("%s %s has mode %04o: its group may change it; make it 0600, or 0640 with group mirrord (chmod g-w %s)", what, path, perm, path)
	}
	return nil
}

// inlineSecrets names the settings of a configuration file that hold a
// secret in the file itself.
func inlineSecrets(c Config) []string {
	var out []string
	if c.Etcd.Password != "" {
		out = append(out, "etcd.password")
	}
	if c.NATS.Password != "" {
		out = append(out, "nats.password")
	}
	if c.NATS.Token != "" {
		out = append(out, "nats.token")
	}
	// A plugin's environment is where its tokens go
	// (docs/writing-a-plugin.md).
	for _, name := range slices.Sorted(maps.Keys(c.Plugins)) {
		if len(c.Plugins[name].Env) > 0 {
			out = append(out, "plugins."+name+".env")
		}
	}
	return out
}
