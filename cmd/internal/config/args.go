package config

import (
	"flag"
	"io"
	"strings"
)

// LoadArgs is LoadFor for a command that takes arguments besides its
// flags (mirrorctl's names): flags may come before, between or after
// them. It returns the arguments in order.
func LoadArgs(name string, args []string, getenv func(string) string, stderr io.Writer, extra func(*flag.FlagSet)) (Config, []string, error) {
	flags, rest := splitArgs(args, extra)
	c, err := LoadFor(name, flags, getenv, stderr, extra)
	return c, rest, err
}

// splitArgs separates the flags (with their values) from the other
// arguments, knowing which flags take a value. "--" ends the flags.
func splitArgs(args []string, extra func(*flag.FlagSet)) (flags, rest []string) {
	// The same flags as LoadFor's, on a scratch configuration. extra binds
	// the caller's variables to their defaults, as LoadFor does again.
	fs := flag.NewFlagSet("split", flag.ContinueOnError)
	var scratch Config
	for _, o := range scratch.options() {
		fs.Var(o.value, o.name, "")
	}
	fs.String("config", "", "")
	if extra != nil {
		extra(fs)
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return flags, append(rest, args[i+1:]...)
		case !strings.HasPrefix(a, "-") || a == "-":
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // LoadFor reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, rest
}
