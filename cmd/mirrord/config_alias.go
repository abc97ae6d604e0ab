package main

import (
	"flag"
	"io"

	"github.com/cdmdr/mirror/cmd/internal/config"
)

// The configuration lives in cmd/internal/config, shared with mirrorctl;
// these names keep mirrord's code reading as before.
type (
	Config         = config.Config
	PluginSettings = config.PluginSettings
)

func defaultConfig() Config { return config.Default() }

func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	return config.Load(args, getenv, stderr)
}

func loadConfigFor(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (Config, error) {
	return config.LoadFor(name, args, getenv, stderr, extra)
}

func printedHelp(err error, stdout io.Writer) bool { return config.PrintedHelp(err, stdout) }
