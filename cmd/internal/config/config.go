// Package config is mirrord's configuration: flags, MIRRORD_* variables
// and the YAML file, read by mirrord and mirrorctl through the same code.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cdmdr/mirror/app"
)

// Config is everything mirrord can be told. Values come from, in order of
// precedence: flags, MIRRORD_* environment variables, the YAML file named
// by --config, defaults.
type Config struct {
	DaemonID string `yaml:"daemon_id"`
	Embedded string `yaml:"embedded"` // data dir of an in-process etcd and NATS; empty: use external servers
	// Loopback ports of the embedded servers (0: any free port).
	EmbeddedEtcdPort int `yaml:"embedded_etcd_port"`
	EmbeddedNATSPort int `yaml:"embedded_nats_port"`

	Etcd struct {
		Endpoints    []string      `yaml:"endpoints"`
		Username     string        `yaml:"username"`
		Password     string        `yaml:"password"`
		PasswordFile string        `yaml:"password_file"`
		CAFile       string        `yaml:"ca_file"`
		CertFile     string        `yaml:"cert_file"`
		KeyFile      string        `yaml:"key_file"`
		DialTimeout  time.Duration `yaml:"dial_timeout"`
		SessionTTL   time.Duration `yaml:"session_ttl"`
		LeaderPrefix string        `yaml:"leader_prefix"`
	} `yaml:"etcd"`

	NATS struct {
		URL          string `yaml:"url"`
		CredsFile    string `yaml:"creds_file"`
		User         string `yaml:"user"`
		Password     string `yaml:"password"`
		PasswordFile string `yaml:"password_file"`
		Token        string `yaml:"token"`
		Mode         string `yaml:"mode"` // auto, jetstream, core
		EventSubject string `yaml:"event_subject"`
		CreatedSubj  string `yaml:"snapshot_created_subject"`
		DeletedSubj  string `yaml:"snapshot_deleted_subject"`
	} `yaml:"nats"`

	PluginDir      string        `yaml:"plugin_dir"`
	ResyncInterval time.Duration `yaml:"resync_interval"`
	PollInterval   time.Duration `yaml:"poll_interval"`
	FastPoll       time.Duration `yaml:"fast_poll_interval"`
	SnapshotPoll   time.Duration `yaml:"snapshot_poll_interval"`
	// ActionTimeout bounds one storage plugin call: a call that does not
	// answer in time is given up, retried or reported in the status.
	ActionTimeout time.Duration `yaml:"action_timeout"`
	LogLevel      string        `yaml:"log_level"`  // debug, info, warn, error
	LogFormat     string        `yaml:"log_format"` // auto, text, json
	// HTTPAddress is where /metrics, /healthz and /readyz are served
	// (empty: not served).
	HTTPAddress string `yaml:"http_address"`

	// Plugins are the settings of the plugins of PluginDir, by file name:
	// what each is started with, so that two daemons on one machine keep
	// separate plugin state. From the file's `plugins:` map; an entry of
	// MIRRORD_PLUGINS (the same map in YAML or JSON) replaces the file's
	// entry for that plugin. No flag: an environment value may be a secret.
	Plugins map[string]PluginSettings `yaml:"plugins"`
}

// PluginSettings are one plugin's: the arguments after its executable
// (visible in ps: never a secret) and variables added to its environment
// (PATH otherwise; values are never logged).
type PluginSettings struct {
	Args []string          `yaml:"args"`
	Env  map[string]string `yaml:"env"`
}

// Default is the configuration with nothing set.
func Default() Config {
	var c Config
	c.Etcd.Endpoints = []string{"127.0.0.1:2379"}
	c.EmbeddedEtcdPort = 2379
	c.EmbeddedNATSPort = 4222
	c.Etcd.DialTimeout = 5 * time.Second
	c.Etcd.SessionTTL = 10 * time.Second
	c.Etcd.LeaderPrefix = "mirror_leader/"
	c.NATS.URL = "nats://127.0.0.1:4222"
	c.NATS.Mode = "auto"
	c.NATS.EventSubject = "cdm.dr.mirror.event"
	c.NATS.CreatedSubj = "cdm.cluster.volume_snapshot.created"
	c.NATS.DeletedSubj = "cdm.cluster.volume_snapshot.deleted"
	c.PluginDir = "/usr/lib/mirrord/plugins"
	c.ResyncInterval = app.DefaultResyncInterval
	c.ActionTimeout = app.DefaultActionTimeout
	c.PollInterval = 30 * time.Second
	c.FastPoll = 2 * time.Second
	c.SnapshotPoll = app.DefaultSnapshotPollInterval
	c.LogLevel = "info"
	c.LogFormat = "auto"
	c.HTTPAddress = "127.0.0.1:9464"
	return c
}

// option binds one setting to its flag and environment variable.
type option struct {
	name  string // flag name; env is MIRRORD_ + upper snake
	usage string
	value flag.Value
}

func (c *Config) options() []option {
	return []option{
		{"daemon-id", "this daemon's id in leader keys and statuses (default hostname-pid)", (*stringValue)(&c.DaemonID)},
		{"embedded", "run an in-process etcd and NATS (JetStream) with their data under this directory, on loopback", (*stringValue)(&c.Embedded)},
		{"embedded-etcd-port", "loopback client port of the embedded etcd (its peer port is the next one; 0: any free port)", (*intValue)(&c.EmbeddedEtcdPort)},
		{"embedded-nats-port", "loopback port of the embedded NATS (0: any free port)", (*intValue)(&c.EmbeddedNATSPort)},
		{"etcd-endpoints", "comma-separated etcd endpoints", (*listValue)(&c.Etcd.Endpoints)},
		{"etcd-username", "etcd user", (*stringValue)(&c.Etcd.Username)},
		{"etcd-password-file", "file holding the etcd password (or set MIRRORD_ETCD_PASSWORD)", (*stringValue)(&c.Etcd.PasswordFile)},
		{"etcd-ca-file", "CA bundle to verify etcd's certificate", (*stringValue)(&c.Etcd.CAFile)},
		{"etcd-cert-file", "client certificate for etcd", (*stringValue)(&c.Etcd.CertFile)},
		{"etcd-key-file", "client key for etcd", (*stringValue)(&c.Etcd.KeyFile)},
		{"etcd-dial-timeout", "etcd dial timeout", (*durationValue)(&c.Etcd.DialTimeout)},
		{"etcd-session-ttl", "leadership session TTL: how fast survivors take over a dead daemon's volumes", (*durationValue)(&c.Etcd.SessionTTL)},
		{"leader-prefix", "key prefix of leader keys", (*stringValue)(&c.Etcd.LeaderPrefix)},
		{"nats-url", "NATS server URL(s), comma-separated", (*stringValue)(&c.NATS.URL)},
		{"nats-creds-file", "NATS credentials file", (*stringValue)(&c.NATS.CredsFile)},
		{"nats-user", "NATS user", (*stringValue)(&c.NATS.User)},
		{"nats-password-file", "file holding the NATS password (or set MIRRORD_NATS_PASSWORD)", (*stringValue)(&c.NATS.PasswordFile)},
		{"nats-mode", "auto, jetstream or core: how snapshot events are consumed", (*stringValue)(&c.NATS.Mode)},
		{"event-subject", "subject of mirrord's own events", (*stringValue)(&c.NATS.EventSubject)},
		{"snapshot-created-subject", "subject of snapshot-created events", (*stringValue)(&c.NATS.CreatedSubj)},
		{"snapshot-deleted-subject", "subject of snapshot-deleted events", (*stringValue)(&c.NATS.DeletedSubj)},
		{"plugin-dir", "directory of storage plugin executables (their settings: plugins: in the config file, or " + PluginsEnv + ")", (*stringValue)(&c.PluginDir)},
		{"resync-interval", "how often every key is listed again (safety net for missed watch events)", (*durationValue)(&c.ResyncInterval)},
		{"poll-interval", "how often a settled volume asks its backend how it is", (*durationValue)(&c.PollInterval)},
		{"fast-poll-interval", "the same while a volume is initializing, stopping or deleting", (*durationValue)(&c.FastPoll)},
		{"snapshot-poll-interval", "the same while a snapshot of a copying volume is on its way (at most the fast poll interval)", (*durationValue)(&c.SnapshotPoll)},
		{"action-timeout", "how long one storage plugin call may take before it is given up (then retried, or reported in the status)", (*durationValue)(&c.ActionTimeout)},
		{"log-level", "debug, info, warn or error", (*stringValue)(&c.LogLevel)},
		{"log-format", "auto (colour on a terminal, JSON otherwise), text or json", (*stringValue)(&c.LogFormat)},
		{"http-address", "host:port serving /metrics, /healthz and /readyz (empty: none)", (*stringValue)(&c.HTTPAddress)},
	}
}

// envName is the environment variable of a flag: MIRRORD_ETCD_ENDPOINTS.
func envName(flagName string) string {
	return "MIRRORD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load reads mirrord's configuration from args and the environment.
func Load(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	return LoadFor("mirrord", args, getenv, stderr, nil)
}

// LoadFor reads the configuration of the command name (mirrord, or
// a subcommand), which adds its own flags with extra.
func LoadFor(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (Config, error) {
	// The file comes first, so find --config before parsing the rest.
	file := getenv("MIRRORD_CONFIG")
	pre := flag.NewFlagSet("mirrord", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	pre.StringVar(&file, "config", file, "")
	pre.Usage = func() {}
	_ = pre.Parse(filterConfigFlag(args))

	c := Default()
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return Config{}, fmt.Errorf("read config file: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("config file %s: %w", file, err)
		}
		if held := inlineSecrets(c); len(held) > 0 {
			if err := checkPrivate(file, "config file (it holds "+strings.Join(held, ", ")+")"); err != nil {
				return Config{}, err
			}
		}
	}

	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n", name)
		if extra == nil {
			fmt.Fprintln(fs.Output(), "       mirrord leftovers [flags]    list what the plugins left on the storages (-h for its flags)")
			fmt.Fprintln(fs.Output(), "       mirrord --version            print the version and exit")
		}
		fs.PrintDefaults()
	}
	if extra != nil {
		extra(fs)
	}
	fs.String("config", file, "YAML configuration file (or MIRRORD_CONFIG)")
	for _, o := range c.options() {
		if v := getenv(envName(o.name)); v != "" {
			if err := o.value.Set(v); err != nil {
				return Config{}, fmt.Errorf("%s: %w", envName(o.name), err)
			}
		}
		fs.Var(o.value, o.name, o.usage+" (env "+envName(o.name)+")")
	}
	// The usage goes to stdout when asked for (-h), with the error to
	// stderr otherwise: so it is kept until Parse says which.
	var usage strings.Builder
	fs.SetOutput(&usage)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, &helpRequested{usage: usage.String()}
		}
		io.WriteString(stderr, usage.String())
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if v := getenv(PluginsEnv); v != "" {
		if err := c.mergePlugins(v); err != nil {
			return Config{}, err
		}
	}
	// Secrets are never flags (they would show in ps): environment or file.
	if v := getenv("MIRRORD_ETCD_PASSWORD"); v != "" {
		c.Etcd.Password = v
	}
	if v := getenv("MIRRORD_NATS_PASSWORD"); v != "" {
		c.NATS.Password = v
	}
	if v := getenv("MIRRORD_NATS_TOKEN"); v != "" {
		c.NATS.Token = v
	}
	if err := readSecret(&c.Etcd.Password, c.Etcd.PasswordFile); err != nil {
		return Config{}, err
	}
	if err := readSecret(&c.NATS.Password, c.NATS.PasswordFile); err != nil {
		return Config{}, err
	}
	if c.DaemonID == "" {
		host, _ := os.Hostname()
		c.DaemonID = host + "-" + strconv.Itoa(os.Getpid())
	}
	return c, c.validate()
}

// helpRequested is loadConfigFor's answer to -h or -help: the caller
// prints usage on stdout and exits 0.
type helpRequested struct{ usage string }

func (h *helpRequested) Error() string { return "help requested" }
func (h *helpRequested) Unwrap() error { return flag.ErrHelp }

// PrintedHelp prints the usage on stdout if err asks for it, and says
// whether it did.
func PrintedHelp(err error, stdout io.Writer) bool {
	var h *helpRequested
	if !errors.As(err, &h) {
		return false
	}
	io.WriteString(stdout, h.usage)
	return true
}

func (c Config) validate() error {
	var errs []error
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log format %q: want auto, text or json", c.LogFormat))
	}
	switch c.NATS.Mode {
	case "auto", "jetstream", "core":
	default:
		errs = append(errs, fmt.Errorf("nats mode %q: want auto, jetstream or core", c.NATS.Mode))
	}
	if c.Embedded == "" && len(c.Etcd.Endpoints) == 0 {
		errs = append(errs, errors.New("no etcd endpoints"))
	}
	if c.Etcd.SessionTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("etcd session ttl %s: at least 2s", c.Etcd.SessionTTL))
	}
	if c.ResyncInterval <= 0 || c.PollInterval <= 0 || c.FastPoll <= 0 || c.SnapshotPoll <= 0 {
		errs = append(errs, errors.New("resync and poll intervals must be positive"))
	}
	if c.ActionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("action timeout %s: at least 1s", c.ActionTimeout))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Plugins)) {
		errs = append(errs, validPluginSettings(name, c.Plugins[name]))
	}
	return errors.Join(errs...)
}

// PluginsEnv holds plugin settings in the environment.
const PluginsEnv = "MIRRORD_PLUGINS"

// mergePlugins reads MIRRORD_PLUGINS's map: each plugin it names gets
// these settings instead of the file's. Errors never quote the value: it
// may hold secrets.
func (c *Config) mergePlugins(v string) error {
	var m map[string]PluginSettings
	dec := yaml.NewDecoder(strings.NewReader(v))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		// yaml's error would quote the offending value.
		return fmt.Errorf("%s: not a YAML or JSON map of plugin settings ({name: {args: [...], env: {...}}})", PluginsEnv)
	}
	if c.Plugins == nil {
		c.Plugins = map[string]PluginSettings{}
	}
	maps.Copy(c.Plugins, m)
	return nil
}

// validPluginSettings refuses a name that cannot be a file of the plugin
// directory and environment names a process cannot have.
func validPluginSettings(name string, s PluginSettings) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("plugin settings for %q: want the name of a plugin file in the plugin directory", name)
	}
	var errs []error
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			errs = append(errs, fmt.Errorf("plugin %s: environment variable name %q: want a name without '=' or NUL", name, k))
		}
		if strings.ContainsRune(v, 0) {
			errs = append(errs, fmt.Errorf("plugin %s: the value of %s holds a NUL byte", name, k))
		}
	}
	for i, a := range s.Args {
		if strings.ContainsRune(a, 0) {
			errs = append(errs, fmt.Errorf("plugin %s: argument %d holds a NUL byte", name, i+1))
		}
	}
	return errors.Join(errs...)
}

func readSecret(dst *string, file string) error {
	if file == "" {
		return nil
	}
	if err := checkPrivate(file, "secret file"); err != nil {
		return err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read secret file: %w", err)
	}
	*dst = strings.TrimSpace(string(data))
	return nil
}

// filterConfigFlag keeps only --config from args, so the first pass does
// not stop at flags it does not know.
func filterConfigFlag(args []string) []string {
	for i, a := range args {
		switch {
		case a == "-config" || a == "--config":
			if i+1 < len(args) {
				return []string{a, args[i+1]}
			}
		case strings.HasPrefix(a, "-config=") || strings.HasPrefix(a, "--config="):
			return []string{a}
		}
	}
	return nil
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }

type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }
func (l *listValue) Set(v string) error {
	*l = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }
func (d *durationValue) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	*d = durationValue(x)
	return nil
}

type intValue int

func (i *intValue) String() string { return strconv.Itoa(int(*i)) }
func (i *intValue) Set(v string) error {
	x, err := strconv.Atoi(v)
	if err != nil {
		return err
	}
	*i = intValue(x)
	return nil
}
