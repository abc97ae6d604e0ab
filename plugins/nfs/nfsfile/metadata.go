package nfsfile

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/sdk"
)

// Defaults of the target storage's metadata.
const (
	DefaultSyncInterval = 30 * time.Second
	minSyncInterval     = time.Second
)

// sourceMeta is a source storage's metadata: how to reach and trust the
// agents next to it. The volume names the agent's address
// (Volume.SourceAgent).
type sourceMeta struct {
	// AgentTokenFile holds the token the agents accept (mode 0600 or
	// stricter); AgentToken is the token itself. One of them is required.
	AgentTokenFile string `json:"agent_token_file"`
	AgentToken     string `json:"agent_token"`
	// AgentCAFile, when set, makes the plugin speak TLS to the agent and
	// trust the agent's certificate only if this CA signed it.
	AgentCAFile string `json:"agent_ca_file"`
	// AgentCertFile and AgentKeyFile are the plugin's client certificate
	// for agents that ask for one (mTLS).
	AgentCertFile string `json:"agent_cert_file"`
	AgentKeyFile  string `json:"agent_key_file"`
}

// targetMeta is a target storage's metadata.
type targetMeta struct {
	// Directory is the mount point of the share holding the copies.
	Directory string `json:"directory"`
	// SyncInterval is how often a volume is synced: the RPO ("30s").
	SyncInterval string `json:"sync_interval"`
	// BlockSize is the size of the blocks compared and sent.
	BlockSize int `json:"block_size"`
}

// target is a target storage's metadata, checked.
type target struct {
	dir       string
	interval  time.Duration
	blockSize int
}

// parseTarget reads and checks a target storage's metadata. Errors name
// fields, never values: metadata may hold secrets.
func parseTarget(s sdk.Storage) (target, error) {
	var m targetMeta
	if err := decodeMeta(s, &m); err != nil {
		return target{}, err
	}
	t := target{dir: m.Directory, interval: DefaultSyncInterval, blockSize: agentproto.DefaultBlockSize}
	if t.dir == "" || !filepath.IsAbs(t.dir) {
		return target{}, fmt.Errorf("storage %s: metadata field directory must be an absolute path: %w", storageName(s), sdk.ErrPrecondition)
	}
	t.dir = filepath.Clean(t.dir)
	if m.SyncInterval != "" {
		d, err := time.ParseDuration(m.SyncInterval)
		if err != nil || d < minSyncInterval {
			return target{}, fmt.Errorf("storage %s: metadata field sync_interval must be a duration of at least %s (e.g. \"30s\"): %w", storageName(s), minSyncInterval, sdk.ErrPrecondition)
		}
		t.interval = d
	}
	if m.BlockSize != 0 {
		if err := agentproto.CheckBlockSize(m.BlockSize); err != nil {
			return target{}, fmt.Errorf("storage %s: metadata field block_size: %v: %w", storageName(s), err, sdk.ErrPrecondition)
		}
		t.blockSize = m.BlockSize
	}
	return t, nil
}

// agentConfig is how to reach a volume's agent.
func agentConfig(s sdk.Storage, a sdk.Agent) (agentproto.ClientConfig, error) {
	if a.IP == "" || a.Port == 0 {
		return agentproto.ClientConfig{}, fmt.Errorf("the mirror volume names no source_agent (ip and port): file volumes are read through the agent next to the source storage: %w", sdk.ErrPrecondition)
	}
	var m sourceMeta
	if err := decodeMeta(s, &m); err != nil {
		return agentproto.ClientConfig{}, err
	}
	token := []byte(m.AgentToken)
	if m.AgentTokenFile != "" {
		b, err := readPrivate(m.AgentTokenFile)
		if err != nil {
			return agentproto.ClientConfig{}, fmt.Errorf("storage %s: metadata field agent_token_file: %v: %w", storageName(s), err, sdk.ErrPrecondition)
		}
		token = bytes.TrimSpace(b)
	}
	if len(token) == 0 {
		return agentproto.ClientConfig{}, fmt.Errorf("storage %s: metadata names no agent token (agent_token_file or agent_token): %w", storageName(s), sdk.ErrPrecondition)
	}
	cfg := agentproto.ClientConfig{Address: netJoin(a), Token: token}
	if m.AgentCAFile != "" {
		pem, err := os.ReadFile(m.AgentCAFile)
		if err != nil {
			return agentproto.ClientConfig{}, fmt.Errorf("storage %s: metadata field agent_ca_file: %v: %w", storageName(s), err, sdk.ErrPrecondition)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return agentproto.ClientConfig{}, fmt.Errorf("storage %s: metadata field agent_ca_file holds no PEM certificate: %w", storageName(s), sdk.ErrPrecondition)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if m.AgentCertFile != "" || m.AgentKeyFile != "" {
			cert, err := tls.LoadX509KeyPair(m.AgentCertFile, m.AgentKeyFile)
			if err != nil {
				return agentproto.ClientConfig{}, fmt.Errorf("storage %s: metadata fields agent_cert_file and agent_key_file: %v: %w", storageName(s), err, sdk.ErrPrecondition)
			}
			cfg.TLS.Certificates = []tls.Certificate{cert}
		}
	}
	return cfg, nil
}

// readPrivate reads a secret file, refusing one that others can read.
func readPrivate(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %s): make it 0600", path, fi.Mode().Perm())
	}
	return os.ReadFile(path)
}

func decodeMeta(s sdk.Storage, v any) error {
	if len(s.Metadata) == 0 {
		return fmt.Errorf("storage %s has no metadata: %w", storageName(s), sdk.ErrPrecondition)
	}
	if err := json.Unmarshal(s.Metadata, v); err != nil {
		// json's message may quote the value: say only where it broke.
		return fmt.Errorf("storage %s: metadata is not the JSON object this plugin reads (%T): %w", storageName(s), err, sdk.ErrPrecondition)
	}
	return nil
}

func storageName(s sdk.Storage) string {
	return fmt.Sprintf("clusters/%d/storages/%d", s.ClusterID, s.StorageID)
}

func netJoin(a sdk.Agent) string {
	return net.JoinHostPort(a.IP, strconv.Itoa(int(a.Port)))
}

// splitAgent parses an agent address "ip:port".
func splitAgent(addr string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("agent address %q: %w", addr, err)
	}
	return host, uint16(p), nil
}
