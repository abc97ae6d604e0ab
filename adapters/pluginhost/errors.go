package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/ports"
)

// callError is a failed call to a plugin as the daemon sees it: a message
// for operators (the plugin's own, after which plugin and call), and the
// ports sentinels callers test with errors.Is.
type callError struct {
	msg   string
	kinds []error
}

func (e *callError) Error() string   { return e.msg }
func (e *callError) Unwrap() []error { return e.kinds }

// errPluginDown is what get returns while no process of the plugin runs;
// its message says why.
type errPluginDown struct{ msg string }

func (e *errPluginDown) Error() string { return e.msg }

// kindOf is the error the port promises for the contract error a
// plugin's error stands for (the port's sentinels are the contract's). A
// context error the caller's context does not explain (the plugin's own
// context ended, or the connection was closed under the call) is
// retryable.
func kindOf(kind error) []error {
	switch kind {
	case nil:
		return nil
	case ports.ErrNotFound, ports.ErrPrecondition, ports.ErrInProgress:
		return []error{kind}
	default:
		return []error{ports.ErrRetryable}
	}
}

// mayBeDead says whether err could mean the plugin's process went away
// (gRPC Unavailable, a connection closed under the call, or a transport
// error that is no status at all), and is worth a health check.
func mayBeDead(err error) bool {
	var re *sdk.RemoteError
	if !errors.As(err, &re) {
		return true
	}
	return re.Kind == sdk.ErrRetryable || re.Kind == context.Canceled
}

// mapError turns the error of a call into the error the port promises.
// ctx is the caller's, callCtx the one bounded by the call timeout.
func (b *backend) mapError(ctx, callCtx context.Context, method string, inst *instance, err error) error {
	prefix := fmt.Sprintf("plugin %s: %s", b.m.displayName(), method)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return &callError{msg: prefix + ": " + ctxErr.Error(), kinds: []error{ctxErr}}
	}
	var down *errPluginDown
	if errors.As(err, &down) {
		return &callError{msg: prefix + ": " + down.msg, kinds: []error{ports.ErrRetryable}}
	}
	if callCtx.Err() != nil || timedOut(callCtx, err) {
		if dl, ok := ctx.Deadline(); ok && dl.Before(time.Now().Add(deadlineSlack)) {
			// The caller's deadline, not the call timeout, ran out.
			return &callError{msg: prefix + ": " + context.DeadlineExceeded.Error(), kinds: []error{context.DeadlineExceeded}}
		}
		return &callError{
			msg:   fmt.Sprintf("%s: no answer within %v (the plugin call timeout)", prefix, b.m.host.cfg.CallTimeout),
			kinds: []error{ports.ErrRetryable, context.DeadlineExceeded},
		}
	}
	msg := err.Error()
	var re *sdk.RemoteError
	if errors.As(err, &re) {
		msg = re.Message
	}
	msg = cutText(msg) // a status quotes it
	if inst != nil && mayBeDead(err) && b.m.dead(inst) {
		return &callError{
			msg:   fmt.Sprintf("%s: the plugin process (pid %d) exited during the call (%s); it is being restarted", prefix, inst.pid, msg),
			kinds: []error{ports.ErrRetryable},
		}
	}
	if re != nil {
		return &callError{msg: prefix + ": " + msg, kinds: kindOf(re.Kind)}
	}
	return &callError{msg: prefix + ": " + msg}
}

// deadlineSlack is how close to the call's deadline a context error from
// the plugin counts as the call timing out: the plugin's side learns the
// deadline rounded down, and its end reaches the host as a cancellation
// just before the host's own context ends.
const deadlineSlack = 100 * time.Millisecond

// timedOut says whether err is the plugin giving up at the call's
// deadline.
func timedOut(callCtx context.Context, err error) bool {
	var re *sdk.RemoteError
	if !errors.As(err, &re) || (re.Kind != context.Canceled && re.Kind != context.DeadlineExceeded) {
		return false
	}
	dl, ok := callCtx.Deadline()
	return ok && time.Until(dl) < deadlineSlack
}

var errExitedAtStart = errors.New("exited during the handshake: not a mirror storage plugin, or it crashed at start")

var pluginVersionRE = regexp.MustCompile(`Plugin version: (\d+)`)

// explainStart rewords why go-plugin could not start a plugin for the
// operator who put the file in the directory.
func explainStart(err error, startTimeout time.Duration) error {
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		return fmt.Errorf("the file changed after its checksum was verified (checksum mismatch at start): %w", err)
	case strings.Contains(msg, "incompatible API version with plugin"):
		if m := pluginVersionRE.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("speaks plugin protocol version %s, this daemon speaks version %d: rebuild it with a matching plugin SDK", m[1], sdk.ProtocolVersion)
		}
		return fmt.Errorf("speaks another plugin protocol version than this daemon's %d: %w", sdk.ProtocolVersion, err)
	case strings.Contains(msg, "incompatible core API version"):
		return fmt.Errorf("built with an incompatible hashicorp/go-plugin: rebuild it with a matching plugin SDK: %w", err)
	case strings.Contains(msg, "Unrecognized remote plugin message"):
		first, _, _ := strings.Cut(strings.TrimPrefix(msg, "Unrecognized remote plugin message: "), "\n")
		if first == "" {
			return errExitedAtStart
		}
		return fmt.Errorf("not a mirror storage plugin: it answered %q to the handshake", first)
	case strings.Contains(msg, "plugin exited before we could connect"):
		return errExitedAtStart
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("did not complete the handshake within %v: not a mirror storage plugin, or it hangs at start", startTimeout)
	case strings.Contains(msg, "unsupported plugin protocol"):
		return fmt.Errorf("does not speak gRPC (only gRPC plugins are loaded): %w", err)
	}
	return err
}
