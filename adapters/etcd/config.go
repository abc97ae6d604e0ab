// Package etcd implements the ports.KV and ports.Election ports on etcd v3,
// and runs an embedded etcd server for single-node setups and tests.
package etcd

import "time"

// Defaults used when the matching Config field is zero.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultSessionTTL  = 10 * time.Second
)

// Config says how to reach an etcd cluster.
type Config struct {
	// Endpoints are the client URLs, e.g. "https://10.0.0.1:2379".
	Endpoints []string
	// Username and Password log in when etcd auth is enabled; leave both
	// empty otherwise. The password is never logged.
	Username, Password string
	// CAFile verifies the servers' certificates; CertFile and KeyFile are
	// this client's certificate for mutual TLS. Any of them set turns TLS on.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds connecting and logging in (default 5s).
	DialTimeout time.Duration
	// SessionTTL is the lease TTL of the election session (default 10s):
	// how long a dead daemon keeps its leaderships.
	SessionTTL time.Duration
}

func (c Config) dialTimeout() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return DefaultDialTimeout
}

func (c Config) tls() bool {
	return c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
}
