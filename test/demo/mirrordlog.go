package main

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// syncRecord is the nfs plugin's "synced" log line, which mirrord
// forwards into its own log: what one sync of a volume moved.
type syncRecord struct {
	at        time.Time // when the demo read it
	firstCopy bool
	changed   int64 // blocks changed (fetched)
	bytes     int64 // block data received from the agent
	duration  time.Duration
}

// logWatcher is mirrord's (or the agent's) stderr, JSON lines: it keeps
// every line in the log file and picks out the plugin's sync records and
// the addresses the processes listen on.
type logWatcher struct {
	file io.Writer

	mu      sync.Mutex
	partial []byte
	syncs   []syncRecord
	notify  chan struct{} // a new sync record
	lines   [][]byte      // the last lines, shown when the demo fails
	// Where mirrord's embedded servers and HTTP endpoints listen (it
	// picks free ports and logs them).
	etcd, nats, http string
	listen           string // the agent's
}

func newLogWatcher(file io.Writer) *logWatcher {
	return &logWatcher{file: file, notify: make(chan struct{}, 1)}
}

func (l *logWatcher) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.file.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(bytes.Clone(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

const keepLines = 40

func (l *logWatcher) line(b []byte) {
	l.lines = append(l.lines, b)
	if len(l.lines) > keepLines {
		l.lines = l.lines[1:]
	}
	var r struct {
		Msg       string   `json:"msg"`
		Etcd      []string `json:"etcd"`
		NATS      string   `json:"nats"`
		Addr      string   `json:"addr"`
		FirstCopy bool     `json:"first_copy"`
		Changed   int64    `json:"blocks_changed"`
		Bytes     int64    `json:"bytes"`
		Duration  string   `json:"duration"`
	}
	if json.Unmarshal(b, &r) != nil {
		return
	}
	switch {
	case r.Msg == "embedded servers running" && len(r.Etcd) > 0:
		l.etcd, l.nats = r.Etcd[0], r.NATS
	case r.Msg == "http endpoints serving":
		l.http = r.Addr
	case r.Msg == "listening":
		l.listen = r.Addr
	}
	if r.Msg != "synced" {
		return
	}
	d, _ := time.ParseDuration(r.Duration)
	l.syncs = append(l.syncs, syncRecord{at: time.Now(), firstCopy: r.FirstCopy, changed: r.Changed, bytes: r.Bytes, duration: d})
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// syncsSince returns the sync records read from index i on.
func (l *logWatcher) syncsSince(i int) []syncRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i >= len(l.syncs) {
		return nil
	}
	return append([]syncRecord(nil), l.syncs[i:]...)
}

func (l *logWatcher) syncCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.syncs)
}

func (l *logWatcher) tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.lines))
	for i, b := range l.lines {
		out[i] = string(b)
	}
	return out
}

// addresses returns where etcd, NATS and the HTTP endpoints listen, once
// mirrord logged all three.
func (l *logWatcher) addresses() (etcd, nats, http string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.etcd, l.nats, l.http, l.etcd != "" && l.nats != "" && l.http != ""
}

// agentAddress is where the agent listens, once it logged it.
func (l *logWatcher) agentAddress() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listen
}
