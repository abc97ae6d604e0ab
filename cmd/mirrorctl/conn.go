package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/cmd/internal/config"
	"github.com/cdmdr/mirror/core"
)

// load reads mirrord's configuration for the command name with its own
// flags, and returns the arguments among them.
func (e *env) load(name string, args []string, flags func(*flag.FlagSet)) (config.Config, []string, error) {
	if askedHelp(args) {
		fs := flag.NewFlagSet("mirrorctl "+name, flag.ContinueOnError)
		flags(fs)
		fs.SetOutput(e.stdout)
		fmt.Fprintf(e.stdout, "Usage: mirrorctl %s ... [flags]\n", name)
		fs.PrintDefaults()
		fmt.Fprintln(e.stdout, "and mirrord's configuration flags (mirrord -h): --config, --etcd-endpoints, --etcd-username,\n"+
			"--etcd-password-file, --etcd-ca-file, --etcd-cert-file, --etcd-key-file, --etcd-dial-timeout, --leader-prefix, --plugin-dir, ...")
		return config.Config{}, nil, flag.ErrHelp
	}
	cfg, rest, err := config.LoadArgs("mirrorctl "+name, args, e.getenv, e.stderr, flags)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		err = usageError{err}
	}
	return cfg, rest, err
}

// askedHelp reports whether the flags ask for help (before any "--").
func askedHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// connectError is etcd unreachable or refusing the credentials (exit 5).
type connectError struct{ error }

func (c connectError) Unwrap() error { return c.error }

// store is mirrorctl's etcd: the client, the leader prefix and how long a
// call may take before etcd counts as unreachable.
type store struct {
	cli          *clientv3.Client
	leaderPrefix string
	timeout      time.Duration
	endpoints    []string
	user         string
}

// connect opens etcd as cfg says and reads once, so an unreachable etcd
// or refused credentials show here, in words, and not as a hang later.
func connect(ctx context.Context, cfg config.Config) (*store, func(), error) {
	if cfg.Embedded != "" {
		// mirrord's in-process etcd, which must be running.
		cfg.Etcd.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", cfg.EmbeddedEtcdPort)}
	}
	s := &store{leaderPrefix: cfg.Etcd.LeaderPrefix, timeout: cfg.Etcd.DialTimeout,
		endpoints: cfg.Etcd.Endpoints, user: cfg.Etcd.Username}
	if s.timeout <= 0 {
		s.timeout = etcd.DefaultDialTimeout
	}
	cli, closeCli, err := etcd.NewClient(etcd.Config{
		Endpoints: cfg.Etcd.Endpoints, Username: cfg.Etcd.Username, Password: cfg.Etcd.Password,
		CAFile: cfg.Etcd.CAFile, CertFile: cfg.Etcd.CertFile, KeyFile: cfg.Etcd.KeyFile,
		DialTimeout: s.timeout,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, s.explain(err)
	}
	s.cli = cli
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := cli.Get(pctx, core.EnvironmentPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		closeCli()
		return nil, nil, s.explain(err)
	}
	return s, closeCli, nil
}

// explain turns etcd's errors into what an operator checks next.
func (s *store) explain(err error) error {
	where := strings.Join(s.endpoints, ",")
	msg := err.Error()
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed) || strings.Contains(msg, rpctypes.ErrAuthFailed.Error()):
		return connectError{fmt.Errorf("etcd at %s refused user %q: wrong user name or password (--etcd-username, MIRRORD_ETCD_PASSWORD or --etcd-password-file)", where, s.user)}
	case errors.Is(err, rpctypes.ErrUserEmpty) || strings.Contains(msg, rpctypes.ErrUserEmpty.Error()):
		return connectError{fmt.Errorf("etcd at %s requires authentication: set --etcd-username and a password (MIRRORD_ETCD_PASSWORD or --etcd-password-file)", where)}
	case errors.Is(err, rpctypes.ErrPermissionDenied) || strings.Contains(msg, rpctypes.ErrPermissionDenied.Error()):
		return connectError{fmt.Errorf("etcd at %s denied user %q: it needs read (and for operations, write) access to the mirror_ and clusters/ prefixes", where, s.user)}
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "connection refused"):
		return connectError{fmt.Errorf("etcd unreachable: no answer from %s within %s (--etcd-endpoints, --etcd-dial-timeout); is etcd running there?", where, s.timeout)}
	}
	return connectError{fmt.Errorf("etcd at %s: %w", where, err)}
}

// call bounds one etcd call as a dial is, so a lost etcd is an error,
// not a hang.
func (s *store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*s.timeout)
}
