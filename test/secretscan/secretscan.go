// Package secretscan fails a test when one of the suite's test secrets
// (keyrings, passwords, tokens) shows up where no secret may go: a
// daemon's log, an event, a status or any other value mirrord writes, a
// command's output. It looks for each secret as it is and in base64 (at
// every alignment, so a secret inside a larger encoded value is found
// too). A report names the secret and where it was found, never its
// value. docs/reliability/secrets.md says which tests use it.
package secretscan

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Secret is a test secret: Name says in reports what it is.
type Secret struct {
	Name, Value string
}

// Known are the secrets of the root module's tests (the storage metadata
// keyrings the daemons read, etcd and NATS passwords and tokens, a
// plugin's token setting). Tests with secrets of their own add them with
// Add.
var Known = []Secret{
	{"Ceph keyring (app and cmd/mirrord storage metadata)", "AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="},
	{"Ceph admin keyring (cmd/mirrord storage metadata)", "AQDYRuFhPS7hAhAAwWIqa5JedccgV+7iQ7Xj+g=="},
	{"Ceph keyring (plugins/ceph unit tests)", "AQBsecretsecretsecretsecretsecret=="},
	{"etcd password (cmd/mirrord config tests)", "s3cret"},
	{"etcd password file (deploy example)", "etcd-password-value"},
	{"NATS password file (deploy example)", "nats-password-value"},
	{"etcd password (mirrorctl, adapters/etcd)", "right-password"},
	{"wrong etcd password (mirrorctl)", "wrong-password"},
	{"etcd password (adapters/etcd)", "correct-horse-battery"},
	{"plugin token setting (cmd/mirrord config tests)", "env-token"},
	{"NATS token (adapters/nats)", "t0ken"},
	{"NATS password (cmd/mirrord config tests)", "n4ts"},
}

// minEncoded is the shortest base64 needle looked for: shorter ones,
// from short secrets at an unlucky alignment, match random text.
const minEncoded = 8

// needle is one form of a secret to look for.
type needle struct {
	secret Secret
	form   string
	text   []byte
}

// needles are the forms of s: as it is, and in standard and URL base64,
// at each of the three alignments a secret can have inside a larger
// encoded value (only the characters its own bytes decide).
func needles(s Secret) []needle {
	out := []needle{{s, "plain", []byte(s.Value)}}
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
		for k := range 3 {
			padded := strings.Repeat("\x00", k) + s.Value
			b := enc.e.EncodeToString([]byte(padded))
			// The groups of three bytes that hold secret bytes only.
			first, last := (k+2)/3, len(padded)/3
			if last <= first {
				continue
			}
			text := b[first*4 : last*4]
			if len(text) < minEncoded {
				continue
			}
			out = append(out, needle{s, fmt.Sprintf("%s, offset %d", enc.name, k), []byte(text)})
		}
		// The whole encoding, padding included, as a value encoded alone.
		if whole := enc.e.EncodeToString([]byte(s.Value)); len(whole) >= minEncoded {
			out = append(out, needle{s, enc.name, []byte(whole)})
		}
	}
	return out
}

// Finding is a secret found somewhere.
type Finding struct {
	Secret string // its name
	Form   string // plain, base64, ...
	Where  string
	// Context is the text around its first sighting, the secret
	// replaced by [SECRET].
	Context string
	// Times is how many scans of Where found it.
	Times int
}

func (f Finding) String() string {
	more := ""
	if f.Times > 1 {
		more = fmt.Sprintf(" (%d times; the first:)", f.Times)
	}
	return fmt.Sprintf("secret %q (%s) found in %s%s: %s", f.Secret, f.Form, f.Where, more, f.Context)
}

// Scanner looks for secrets in what it is given and keeps what it found.
// It is safe for concurrent use.
type Scanner struct {
	// mu guards needles (read by every scan, so a read lock: daemons
	// logging at once do not wait on each other) and found.
	mu      sync.RWMutex
	needles []needle
	found   []Finding
	// texts and bytes count what was scanned, for the figures.
	texts, bytes atomic.Int64
}

// New scans for the Known secrets and the extra ones.
func New(extra ...Secret) *Scanner {
	s := &Scanner{}
	for _, sec := range append(slices.Clone(Known), extra...) {
		s.Add(sec)
	}
	return s
}

// Add looks for one more secret from now on.
func (s *Scanner) Add(sec Secret) {
	if sec.Value == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.needles = append(s.needles, needles(sec)...)
}

// Scan looks for every secret in data, found in where.
func (s *Scanner) Scan(where string, data []byte) {
	s.texts.Add(1)
	s.bytes.Add(int64(len(data)))
	s.mu.RLock()
	type hit struct {
		n needle
		i int
	}
	var hits []hit
	for i := range s.needles {
		n := s.needles[i]
		if len(hits) > 0 && hits[len(hits)-1].n.secret == n.secret {
			continue // one finding per secret and call
		}
		if j := bytes.Index(data, n.text); j >= 0 {
			hits = append(hits, hit{n, j})
		}
	}
	s.mu.RUnlock()
	if len(hits) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hits {
		n, i := h.n, h.i
		// A log line repeated a thousand times is one finding.
		if j := slices.IndexFunc(s.found, func(f Finding) bool { return f.Secret == n.secret.Name && f.Where == where }); j >= 0 {
			s.found[j].Times++
			continue
		}
		s.found = append(s.found, Finding{Secret: n.secret.Name, Form: n.form, Where: where, Context: around(data, i, len(n.text)), Times: 1})
	}
}

// ScanString is Scan of a string.
func (s *Scanner) ScanString(where, data string) { s.Scan(where, []byte(data)) }

// around is the text around data[i:i+n], that part replaced.
func around(data []byte, i, n int) string {
	const width = 80
	from, to := max(0, i-width), min(len(data), i+n+width)
	return strings.ToValidUTF8(string(data[from:i])+"[SECRET]"+string(data[i+n:to]), "?")
}

// Found is what the scanner found so far.
func (s *Scanner) Found() []Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.found)
}

// Report fails t with each finding, and logs what was scanned.
func (s *Scanner) Report(t testing.TB) {
	t.Helper()
	found := s.Found()
	for _, f := range found {
		t.Errorf("%s", f)
	}
	s.mu.RLock()
	n := len(s.needles)
	s.mu.RUnlock()
	t.Logf("secret scan: %d texts, %d bytes, %d forms of the secrets looked for, %d found", s.texts.Load(), s.bytes.Load(), n, len(found))
}

// Writer scans every write to it, then passes it on to next (nil: to
// nothing). A log handler writing to it is scanned line by line.
func (s *Scanner) Writer(where string, next io.Writer) io.Writer {
	if next == nil {
		next = io.Discard
	}
	return &writer{s: s, where: where, next: next}
}

type writer struct {
	s     *Scanner
	where string
	next  io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	w.s.Scan(w.where, p)
	return w.next.Write(p)
}

// Check fails t if data holds a Known secret or one of extra.
func Check(t testing.TB, where string, data []byte, extra ...Secret) {
	t.Helper()
	s := New(extra...)
	s.Scan(where, data)
	s.Report(t)
}

// Recorder is a testing.TB whose Errorf is recorded instead of failing
// the test: a test of the scanner itself plants secrets and reads what
// the scan reported from Errors.
type Recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

// Errorf records the report.
func (r *Recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// Errors is every report recorded, one a line.
func (r *Recorder) Errors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}
