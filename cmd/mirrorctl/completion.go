package main

import (
	"fmt"
	"strings"
)

// The words completion offers, per position.
var (
	completionCommands = []string{"get", "list", "volume", "environment", "doctor", "purge", "completion", "help"}
	completionSub      = map[string][]string{
		"get":         {"environments", "volumes", "snapshots"},
		"list":        {"environments", "volumes", "snapshots"},
		"volume":      {"start", "pause", "resume", "stop", "stop_and_delete", "destroy"},
		"environment": {"start", "stop"},
		"completion":  {"bash", "zsh"},
	}
	completionFlags = []string{"--config", "--etcd-endpoints", "--etcd-username", "--etcd-password-file",
		"--etcd-ca-file", "--etcd-cert-file", "--etcd-key-file", "--etcd-dial-timeout", "--leader-prefix",
		"-o", "--watch", "--wait", "--timeout", "--force", "--yes"}
)

// runCompletion is `mirrorctl completion bash|zsh`: a script to source.
// zsh runs the bash one through bashcompinit.
func (e *env) runCompletion(args []string) int {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		return e.exitFor("completion", usageError{fmt.Errorf("want: completion bash|zsh")})
	}
	if args[0] == "zsh" {
		fmt.Fprintln(e.stdout, "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit")
	}
	var cases strings.Builder
	for _, c := range completionCommands {
		if sub, ok := completionSub[c]; ok {
			fmt.Fprintf(&cases, "    %s) words=%q ;;\n", c, strings.Join(sub, " "))
		}
	}
	fmt.Fprintf(e.stdout, `# mirrorctl completion: source it, e.g. source <(mirrorctl completion %s)
_mirrorctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} words=""
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W %q -- "$cur")); return
  fi
  if (( COMP_CWORD == 1 )); then
    COMPREPLY=($(compgen -W %q -- "$cur")); return
  fi
  if (( COMP_CWORD == 2 )); then
    case ${COMP_WORDS[1]} in
%s    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur")); return
  fi
  case ${COMP_WORDS[COMP_CWORD-1]} in
    -o) COMPREPLY=($(compgen -W "table wide json yaml text" -- "$cur")); return ;;
    --config|--etcd-password-file|--etcd-ca-file|--etcd-cert-file|--etcd-key-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  # names: the environments and volumes etcd holds now
  COMPREPLY=($(compgen -W "$(mirrorctl get volumes -o json 2>/dev/null | sed -n 's/^ *"name": "\(.*\)",$/\1/p') $(mirrorctl get environments -o json 2>/dev/null | sed -n 's/^ *"name": "\(.*\)",$/\1/p')" -- "$cur"))
}
complete -F _mirrorctl mirrorctl
`, args[0], strings.Join(completionFlags, " "), strings.Join(completionCommands, " "), cases.String())
	return exitOK
}
