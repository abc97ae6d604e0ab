package cephrbd

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// StorageType is the storage type this plugin serves.
const StorageType = "openstack.storage.type.ceph"

// Mirror modes a storage's metadata may ask for.
const (
	modeJournal  = "journal"
	modeSnapshot = "snapshot"
)

// meta is a Ceph storage's metadata (docs/contract.md §2.2). It holds secrets: never
// log it, never format it into an error.
type meta struct {
	Pool                   string `json:"pool"`
	Conf                   string `json:"conf"`
	Client                 string `json:"client"`
	Keyring                string `json:"keyring"`
	AdminClient            string `json:"admin_client"`
	AdminKeyring           string `json:"admin_keyring"`
	MirrorMode             string `json:"mirror_mode"`
	MirrorSnapshotInterval string `json:"mirror_snapshot_interval"`
	// MirrorDeleteDelay is how long rbd-mirror keeps a replica it
	// deletes in the target pool's trash (deletedelay.go).
	MirrorDeleteDelay string `json:"mirror_delete_delay"`
	// MirrorShipInterval paces the ship loop of environments into this
	// storage (a Go duration; ship_loop.go).
	MirrorShipInterval string `json:"mirror_ship_interval"`
	// adminGiven says whether the metadata gave admin credentials. Without
	// them parseMeta sets AdminClient and AdminKeyring to the storage's
	// own client and keyring: "admin" is then the most privileged user
	// the metadata gives, and every call runs as the client.
	adminGiven bool
}

// storageKey names a storage in file names and as its Ceph cluster name,
// after its etcd key: clusters.6.storages.13.
func storageKey(s sdk.Storage) string {
	return fmt.Sprintf("clusters.%d.storages.%d", s.ClusterID, s.StorageID)
}

// parseMeta reads and checks a storage's metadata. Errors name the
// storage and the field, never a value.
func parseMeta(s sdk.Storage) (meta, error) {
	var m meta
	if len(s.Metadata) == 0 {
		return m, fmt.Errorf("storage %s has no metadata; it needs pool, conf, client and keyring (admin_client and admin_keyring are optional): %w",
			storageKey(s), sdk.ErrPrecondition)
	}
	if err := json.Unmarshal(s.Metadata, &m); err != nil {
		// The decoder's message may quote a piece of the document: keep
		// only its kind.
		return m, fmt.Errorf("metadata of storage %s is not a JSON object of strings (%s): %w",
			storageKey(s), jsonErrKind(err), sdk.ErrPrecondition)
	}
	for _, f := range []struct{ name, v string }{
		{"pool", m.Pool}, {"conf", m.Conf}, {"client", m.Client}, {"keyring", m.Keyring},
	} {
		if strings.TrimSpace(f.v) == "" {
			return m, fmt.Errorf("metadata of storage %s lacks %q: %w", storageKey(s), f.name, sdk.ErrPrecondition)
		}
	}
	if err := m.checkAdmin(storageKey(s)); err != nil {
		return m, err
	}
	for _, f := range []struct{ name, v string }{{"pool", m.Pool}, {"client", m.Client}, {"admin_client", m.AdminClient}} {
		if strings.ContainsAny(f.v, "/ \t\n@") || strings.HasPrefix(f.v, ".") {
			return m, fmt.Errorf("metadata of storage %s: %q is not a valid Ceph name: %w", storageKey(s), f.name, sdk.ErrPrecondition)
		}
	}
	// "client.cinder" and "cinder" both name client.cinder.
	m.Client = strings.TrimPrefix(m.Client, "client.")
	m.AdminClient = strings.TrimPrefix(m.AdminClient, "client.")
	if !m.adminGiven {
		m.AdminClient, m.AdminKeyring = m.Client, m.Keyring
	}
	switch m.MirrorMode {
	case "":
		m.MirrorMode = modeJournal
	case modeJournal, modeSnapshot:
	default:
		return m, fmt.Errorf("metadata of storage %s: mirror_mode %q is neither %q nor %q: %w",
			storageKey(s), m.MirrorMode, modeJournal, modeSnapshot, sdk.ErrPrecondition)
	}
	if m.MirrorSnapshotInterval != "" {
		if _, err := snapshotInterval(m.MirrorSnapshotInterval); err != nil {
			return m, fmt.Errorf("metadata of storage %s: mirror_snapshot_interval %q: %v: %w",
				storageKey(s), m.MirrorSnapshotInterval, err, sdk.ErrPrecondition)
		}
	}
	if _, err := deleteDelay(m.MirrorDeleteDelay); err != nil {
		return m, fmt.Errorf("metadata of storage %s: mirror_delete_delay %q: %v: %w",
			storageKey(s), m.MirrorDeleteDelay, err, sdk.ErrPrecondition)
	}
	if _, err := shipInterval(m.MirrorShipInterval); err != nil {
		return m, fmt.Errorf("metadata of storage %s: mirror_ship_interval %q: %v: %w",
			storageKey(s), m.MirrorShipInterval, err, sdk.ErrPrecondition)
	}
	return m, nil
}

// checkAdmin accepts admin_client and admin_keyring both given or both
// absent: one without the other is a mistake to show, not to guess at.
func (m *meta) checkAdmin(key string) error {
	client, keyring := strings.TrimSpace(m.AdminClient) != "", strings.TrimSpace(m.AdminKeyring) != ""
	switch {
	case client && keyring:
		m.adminGiven = true
	case client:
		return fmt.Errorf("metadata of storage %s has \"admin_client\" but lacks \"admin_keyring\"; give both or neither "+
			"(without them the storage's client is used for everything): %w", key, sdk.ErrPrecondition)
	case keyring:
		return fmt.Errorf("metadata of storage %s has \"admin_keyring\" but lacks \"admin_client\"; give both or neither "+
			"(without them the storage's client is used for everything): %w", key, sdk.ErrPrecondition)
	}
	return nil
}

// snapshotInterval checks a mirror snapshot schedule interval as rbd
// takes it: a number with unit m, h or d ("1m", "12h", "1d").
func snapshotInterval(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("want a number and a unit m, h or d")
	}
	var n int
	if _, err := fmt.Sscanf(s[:len(s)-1], "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != s[:len(s)-1] {
		return 0, fmt.Errorf("want a positive number and a unit m, h or d")
	}
	switch s[len(s)-1] {
	case 'm':
		return time.Duration(n) * time.Minute, nil
	case 'h':
		return time.Duration(n) * time.Hour, nil
	case 'd':
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return 0, fmt.Errorf("want a unit m, h or d")
}

func jsonErrKind(err error) string {
	switch err.(type) {
	case *json.SyntaxError:
		return "syntax error"
	case *json.UnmarshalTypeError:
		return "a field has the wrong type"
	}
	return "unreadable"
}

// keyringText turns a keyring field into a keyring file: a bare key gets
// the entity's section; a whole keyring file is kept as it is.
func keyringText(entity, keyring string) string {
	if strings.Contains(keyring, "[") {
		return strings.TrimSpace(keyring) + "\n"
	}
	return fmt.Sprintf("[%s]\n\tkey = %s\n", entity, strings.TrimSpace(keyring))
}

var keyLine = regexp.MustCompile(`(?m)^\s*key\s*=\s*(\S+)\s*$`)

// bareKey is the secret a keyring field gives entity: the field itself
// when it is a bare key, else the key of entity's section of the keyring
// file (else its first key). "" when it holds none.
func bareKey(entity, keyring string) string {
	if !strings.Contains(keyring, "[") {
		return strings.TrimSpace(keyring)
	}
	section, found := "", ""
	for _, line := range strings.Split(keyring, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			section = strings.Trim(t, "[]")
			continue
		}
		if m := keyLine.FindStringSubmatch(line); m != nil {
			if section == entity {
				return m[1]
			}
			if found == "" {
				found = m[1]
			}
		}
	}
	return found
}
