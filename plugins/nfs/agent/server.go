// Package agent is the source agent's server: it serves the block sums
// and block data of the regular files directly inside one directory, to
// callers holding its token, in the protocol of package agentproto.
package agent

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// Config configures a Server.
type Config struct {
	Dir     string       // the directory whose files are served
	Token   []byte       // the bearer token callers must send
	Logger  *slog.Logger // nil: no logs
	Workers int          // files are read by this many workers; 0: GOMAXPROCS
}

// Stats are a Server's counters since New.
type Stats struct {
	Requests     int64 // requests received
	Active       int64 // requests being served now
	Unauthorized int64 // requests refused for their credentials
	Refused      int64 // requests refused otherwise (name, file, parameters)
	BlocksSummed int64 // sums records sent
	BlocksServed int64 // block frames sent, data and zero
	BytesServed  int64 // data bytes sent in block frames
	BytesRead    int64 // bytes read from files
}

// Server serves one directory's files; it is an http.Handler.
type Server struct {
	root     *os.Root
	tokenSum [sha256.Size]byte
	log      *slog.Logger
	workers  int
	mux      *http.ServeMux

	requests, active, unauthorized, refused atomic.Int64
	summed, served, bytesServed, bytesRead  atomic.Int64
}

// New opens cfg.Dir for serving.
func New(cfg Config) (*Server, error) {
	if len(cfg.Token) == 0 {
		return nil, errors.New("agent: no token")
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("agent: open directory: %w", err)
	}
	s := &Server{
		root:     root,
		tokenSum: sha256.Sum256(cfg.Token),
		log:      cfg.Logger,
		workers:  cfg.Workers,
		mux:      http.NewServeMux(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.workers <= 0 {
		s.workers = runtime.GOMAXPROCS(0)
	}
	s.mux.HandleFunc("GET "+agentproto.PathSums, s.handleSums)
	s.mux.HandleFunc("POST "+agentproto.PathBlocks, s.handleBlocks)
	s.mux.HandleFunc("/", s.handleOtherVersion)
	return s, nil
}

// Close releases the directory; requests being served fail.
func (s *Server) Close() error { return s.root.Close() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:     s.requests.Load(),
		Active:       s.active.Load(),
		Unauthorized: s.unauthorized.Load(),
		Refused:      s.refused.Load(),
		BlocksSummed: s.summed.Load(),
		BlocksServed: s.served.Load(),
		BytesServed:  s.bytesServed.Load(),
		BytesRead:    s.bytesRead.Load(),
	}
}

// ServeHTTP checks the caller's token, then serves the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
	w.Header().Set(agentproto.HeaderVersion, agentproto.Version)
	if !s.authorized(r) {
		s.unauthorized.Add(1)
		s.log.Warn("request refused: missing or wrong token", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorized compares the bearer token in constant time (as hashes, so
// its length does not show either).
func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1 && ok
}

// handleOtherVersion refuses a path of another protocol version clearly:
// a plugin of that version would otherwise read 404 as a missing file.
// Other paths are not found.
func (s *Server) handleOtherVersion(w http.ResponseWriter, r *http.Request) {
	v, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(v) < 2 || v[0] != 'v' || strings.Trim(v[1:], "0123456789") != "" || v[1:] == agentproto.Version {
		s.fail(w, r, "", refuse(http.StatusNotFound, "no such endpoint %q", r.URL.Path))
		return
	}
	s.fail(w, r, "", refuse(http.StatusBadRequest, "protocol %s is not served: this agent speaks protocol %s (block sums %s); upgrade the agent and the plugin together", v, "v"+agentproto.Version, agentproto.SumName))
}

// fail answers a request that is refused or failed before its stream.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, name string, err error) {
	if len(name) > 300 { // the caller's words: logged, not at any length
		name = name[:300] + "…"
	}
	var ref *refusal
	if errors.As(err, &ref) {
		s.refused.Add(1)
		s.log.Warn("request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "name", name, "reason", ref.msg)
		http.Error(w, ref.msg, ref.status)
		return
	}
	s.log.Error("request failed", "remote", r.RemoteAddr, "path", r.URL.Path, "name", name, "err", err)
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func blockSize(r *http.Request) (int, error) {
	bs, err := strconv.Atoi(r.URL.Query().Get("bs"))
	if err != nil {
		return 0, refuse(http.StatusBadRequest, "block size %q is not a number", r.URL.Query().Get("bs"))
	}
	if agentproto.CheckBlockSize(bs) != nil {
		return 0, refuse(http.StatusBadRequest, "block size %d: want a power of two from %d to %d", bs, agentproto.MinBlockSize, agentproto.MaxBlockSize)
	}
	return bs, nil
}

func (s *Server) handleSums(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	bs, err := blockSize(r)
	if err != nil {
		s.fail(w, r, name, err)
		return
	}
	f, fi, err := s.open(name)
	if err != nil {
		s.fail(w, r, name, err)
		return
	}
	defer f.Close()
	size := fi.Size()
	n := agentproto.Blocks(size, bs)
	st := s.start(w, agentproto.AppendSumsHeader(nil, size, n))
	sc := &scan{f: f, size: size, bs: bs, workers: s.workers, read: &s.bytesRead}
	var count uint64
	err = sc.run(r.Context(), &picker{ranged: true, to: n}, func(b *batch) error {
		for i := range b.blocks {
			st.buf = agentproto.AppendSum(st.buf, b.blocks[i].kind, &b.blocks[i].sum)
		}
		count += uint64(len(b.blocks))
		s.summed.Add(int64(len(b.blocks)))
		return st.send()
	})
	s.finish(r, st, name, count, err)
}

func (s *Server) handleBlocks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	bs, err := blockSize(r)
	if err != nil {
		s.fail(w, r, name, err)
		return
	}
	var p picker
	if q.Has("from") || q.Has("to") {
		from, err1 := strconv.ParseUint(q.Get("from"), 10, 64)
		to, err2 := strconv.ParseUint(q.Get("to"), 10, 64)
		if err1 != nil || err2 != nil || from > to {
			s.fail(w, r, name, refuse(http.StatusBadRequest, "block range [%q, %q) is not a range", q.Get("from"), q.Get("to")))
			return
		}
		if q.Get("sums") == "0" && to-from > agentproto.RunRequestBytes/uint64(bs) {
			s.fail(w, r, name, refuse(http.StatusRequestEntityTooLarge, "a range with sums=0 covers at most %d bytes: %d blocks of %d asked", agentproto.RunRequestBytes, to-from, bs))
			return
		}
		p = picker{ranged: true, next: from, to: to}
	} else {
		body := http.MaxBytesReader(w, r.Body, agentproto.MaxIndexBody)
		idx, err := agentproto.ReadIndexes(bufio.NewReader(body), agentproto.MaxIndexes)
		if err != nil {
			status := http.StatusBadRequest
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) || errors.Is(err, agentproto.ErrTooManyIndexes) {
				status = http.StatusRequestEntityTooLarge
			}
			s.fail(w, r, name, refuse(status, "%v (at most %d indexes a request)", err, agentproto.MaxIndexes))
			return
		}
		p = picker{list: idx}
	}
	f, fi, err := s.open(name)
	if err != nil {
		s.fail(w, r, name, err)
		return
	}
	defer f.Close()
	size := fi.Size()
	last := agentproto.Blocks(size, bs)
	// Blocks past the end as it is now are not sent.
	if p.ranged {
		p.to = min(p.to, last)
		p.next = min(p.next, p.to)
	} else {
		k := len(p.list)
		for k > 0 && p.list[k-1] >= last {
			k--
		}
		p.list = p.list[:k]
	}
	if p.ranged && q.Get("sums") == "0" {
		s.serveRuns(w, r, f, name, size, bs, p.next, p.to)
		return
	}
	st := s.start(w, agentproto.AppendBlocksHeader(nil, size))
	sc := &scan{f: f, size: size, bs: bs, keep: true, workers: s.workers, read: &s.bytesRead}
	var count uint64
	err = sc.run(r.Context(), &p, func(b *batch) error {
		for i := range b.blocks {
			blk := &b.blocks[i]
			st.buf = agentproto.AppendBlockHead(st.buf, blk.index, blk.kind, &blk.sum, len(blk.data))
			if len(blk.data) > 0 {
				if err := st.write(blk.data); err != nil {
					return err
				}
				s.bytesServed.Add(int64(len(blk.data)))
			}
			count++
			s.served.Add(1)
		}
		return st.send()
	})
	s.finish(r, st, name, count, err)
}

// stream writes a 200 response's frames through a buffer, flushing it to
// the client at the first batch (the status goes out at once) and then at
// least every flushEvery, so a slow scan still shows progress.
type stream struct {
	w     *bufio.Writer
	rc    *http.ResponseController
	buf   []byte // frame heads not yet written to w
	flush time.Time
	gone  bool // a write failed: the client is gone
}

const flushEvery = 500 * time.Millisecond

func (s *Server) start(w http.ResponseWriter, head []byte) *stream {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	return &stream{w: bufio.NewWriterSize(w, 256<<10), rc: http.NewResponseController(w), buf: head}
}

// write writes the pending frame heads, then p.
func (st *stream) write(p []byte) error {
	_, err := st.w.Write(st.buf)
	st.buf = st.buf[:0]
	if err == nil {
		_, err = st.w.Write(p)
	}
	st.gone = st.gone || err != nil
	return err
}

// send writes the pending frame heads, flushing when it is time.
func (st *stream) send() error {
	if err := st.write(nil); err != nil {
		return err
	}
	if time.Since(st.flush) < flushEvery {
		return nil
	}
	st.flush = time.Now()
	err := st.w.Flush()
	if err == nil {
		err = st.rc.Flush()
	}
	st.gone = st.gone || err != nil
	return err
}

// finish ends a stream: with its end frame, or with an error frame when
// the scan failed (nothing more when the client is gone).
func (s *Server) finish(r *http.Request, st *stream, name string, count uint64, err error) {
	switch {
	case err == nil:
		st.buf = agentproto.AppendEnd(st.buf, count)
	case st.gone || r.Context().Err() != nil:
		s.log.Info("client went away", "remote", r.RemoteAddr, "path", r.URL.Path, "name", name, "sent", count)
		return
	default:
		s.log.Error("stream failed", "remote", r.RemoteAddr, "path", r.URL.Path, "name", name, "sent", count, "err", err)
		st.buf = agentproto.AppendError(st.buf, err.Error())
	}
	if err := st.write(nil); err == nil {
		_ = st.w.Flush()
	}
}

var _ http.Handler = (*Server)(nil)
