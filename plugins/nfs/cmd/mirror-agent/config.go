package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// config is the agent's settings: flags, each defaulting to its
// MIRROR_AGENT_* environment variable.
type config struct {
	dir, listen, tokenFile    string
	tlsCert, tlsKey, clientCA string
	logLevel                  string
	version                   bool
}

const usageHead = `mirror-agent serves the block sums and blocks of the volume files in one
directory to the mirror nfs plugin, to callers holding the token only.

Usage: mirror-agent -dir DIR -token-file FILE [flags]

Every flag may be set by its environment variable instead (a flag wins).

`

// parseConfig reads flags and environment; after -h it writes the usage
// to help and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, help io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("mirror-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; usage is for -h
	str := func(p *string, name, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" ($"+env+")")
	}
	str(&c.dir, "dir", "MIRROR_AGENT_DIR", "", "directory holding the volume files (required)")
	str(&c.listen, "listen", "MIRROR_AGENT_LISTEN", "127.0.0.1:8080", "address to listen on, ip:port")
	str(&c.tokenFile, "token-file", "MIRROR_AGENT_TOKEN_FILE", "", "file holding the bearer token, mode 0600 or stricter (required)")
	str(&c.tlsCert, "tls-cert", "MIRROR_AGENT_TLS_CERT", "", "PEM certificate: serve over TLS (with -tls-key)")
	str(&c.tlsKey, "tls-key", "MIRROR_AGENT_TLS_KEY", "", "PEM private key of -tls-cert")
	str(&c.clientCA, "client-ca", "MIRROR_AGENT_CLIENT_CA", "", "PEM CA: require client certificates it signed (mTLS)")
	str(&c.logLevel, "log-level", "MIRROR_AGENT_LOG_LEVEL", "info", "debug, info, warn or error")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(help)
			fmt.Fprint(help, usageHead)
			fs.PrintDefaults()
			return c, err
		}
		return c, fmt.Errorf("%w (see -h)", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	if c.version {
		return c, nil
	}
	var lv slog.Level
	switch {
	case c.dir == "":
		return c, errors.New("no directory: set -dir or MIRROR_AGENT_DIR")
	case c.tokenFile == "":
		return c, errors.New("no token file: set -token-file or MIRROR_AGENT_TOKEN_FILE")
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return c, errors.New("TLS needs both -tls-cert and -tls-key")
	case c.clientCA != "" && c.tlsCert == "":
		return c, errors.New("-client-ca (mTLS) needs TLS: set -tls-cert and -tls-key")
	case lv.UnmarshalText([]byte(c.logLevel)) != nil:
		return c, fmt.Errorf("log level %q: want debug, info, warn or error", c.logLevel)
	}
	return c, nil
}

// maxToken bounds the token file's size: a token, not a document.
const maxToken = 4096

// readToken reads the token from path, refusing a file that others than
// its owner can read (or write).
func readToken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("token file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("token file %s has mode %04o: others can read it; it must be 0600 or stricter (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxToken+1))
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if len(b) > maxToken {
		return nil, fmt.Errorf("token file %s is longer than %d bytes", path, maxToken)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) == 0 {
		return nil, fmt.Errorf("token file %s is empty", path)
	}
	if bytes.ContainsAny(tok, "\r\n") {
		return nil, fmt.Errorf("token file %s holds more than one line", path)
	}
	return tok, nil
}
