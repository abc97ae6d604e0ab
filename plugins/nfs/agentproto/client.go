package agentproto

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ErrCorrupt: a block's data does not match the sum sent with it.
var ErrCorrupt = errors.New("block data does not match its sum")

// DefaultTimeout is the client's timeout unless configured.
const DefaultTimeout = 30 * time.Second

// ClientConfig says how to reach an agent.
type ClientConfig struct {
	Address string      // "ip:port", from the volume's source_agent
	Token   []byte      // the shared secret, sent as a bearer token
	TLS     *tls.Config // nil: plain HTTP; with Certificates: mTLS
	// Timeout bounds connecting, waiting for a response and any pause
	// in a response stream (not a whole transfer). Zero: DefaultTimeout.
	Timeout time.Duration
	// Transport replaces the HTTP transport (tests); TLS is then unused.
	Transport http.RoundTripper
}

// Client is a Source reading through an agent over HTTP.
type Client struct {
	base    string
	auth    string
	timeout time.Duration
	http    *http.Client
	sums    atomic.Int64
	blocks  atomic.Int64
}

var _ Source = (*Client)(nil)

// Received is what a Client has read from agents' responses, in bytes.
type Received struct {
	Sums   int64 // bodies of sums responses
	Blocks int64 // bodies of blocks responses
}

// NewClient returns a client of the agent at cfg.Address.
func NewClient(cfg ClientConfig) (*Client, error) {
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("agent address %q: %w", cfg.Address, err)
	}
	if len(cfg.Token) == 0 {
		return nil, errors.New("agent client: no token")
	}
	if bytes.ContainsAny(cfg.Token, "\r\n") {
		return nil, errors.New("agent client: the token holds a line break")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // the agent is addressed directly
		t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
		t.TLSClientConfig = cfg.TLS
		t.TLSHandshakeTimeout = timeout
		t.ResponseHeaderTimeout = timeout
		t.ForceAttemptHTTP2 = false
		t.DisableCompression = true // block data is sent as it is
		rt = t
	}
	return &Client{
		base:    scheme + "://" + cfg.Address,
		auth:    "Bearer " + string(cfg.Token),
		timeout: timeout,
		http:    &http.Client{Transport: rt},
	}, nil
}

// Received returns the bytes read from the agent so far.
func (c *Client) Received() Received {
	return Received{Sums: c.sums.Load(), Blocks: c.blocks.Load()}
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Sums reads the kind and sum of every block of name through the agent.
func (c *Client) Sums(ctx context.Context, name string, blockSize int) (Sums, error) {
	if err := CheckBlockSize(blockSize); err != nil {
		return Sums{}, err
	}
	q := url.Values{"name": {name}, "bs": {strconv.Itoa(blockSize)}}
	var out Sums
	err := c.do(ctx, http.MethodGet, PathSums, q, nil, &c.sums, func(d *Reader, _ func(func() error) error) error {
		size, n, err := d.SumsHeader()
		if err != nil {
			return err
		}
		if size < 0 || n != Blocks(size, blockSize) {
			return fmt.Errorf("the agent sent %d sums for a file of %d bytes", n, size)
		}
		// Grown as the sums arrive: n is only the agent's word.
		c := min(n, 1<<20)
		out = Sums{Size: size, BlockSize: blockSize, Kinds: make([]Kind, 0, c), Sums: make([]Sum, 0, c)}
		var s Sum
		for i := range n {
			kind, end, err := d.Sum(&s)
			if err == nil && end {
				err = fmt.Errorf("the agent sent %d of %d sums: %w", i, n, ErrIncomplete)
			}
			if err != nil {
				return err
			}
			out.Kinds = append(out.Kinds, kind)
			out.Sums = append(out.Sums, s)
		}
		_, end, err := d.Sum(&s)
		if err == nil && !end {
			err = errors.New("the agent sent more sums than announced")
		}
		return err
	})
	if err != nil {
		return Sums{}, fmt.Errorf("sums of %s: %w", name, err)
	}
	return out, nil
}

// Blocks streams blocks of name through the agent (see Source). Each
// data block the agent summed is checked against its sum before fn sees
// it; a range comes in runs, which the client sums itself. A long idx is
// asked for in several requests.
func (c *Client) Blocks(ctx context.Context, name string, blockSize int, from, to uint64, idx []uint64, fn func(Block) error) (int64, error) {
	if err := CheckBlockSize(blockSize); err != nil {
		return 0, err
	}
	buf := make([]byte, blockSize)
	if idx == nil {
		if from > to {
			return 0, fmt.Errorf("blocks of %s: range [%d, %d): %w", name, from, to, ErrRefused)
		}
		// A range is a first copy: its data comes in runs, unsummed, at
		// most RunRequestBytes a request (see the protocol in wire.go).
		per := uint64(RunRequestBytes / blockSize)
		next := from
		expected := func(i uint64) bool {
			ok := i >= next && i < to
			next = i + 1
			return ok
		}
		for lo := from; ; {
			hi := to
			if to-lo > per {
				hi = lo + per
			}
			q := url.Values{"name": {name}, "bs": {strconv.Itoa(blockSize)}, "sums": {"0"},
				"from": {strconv.FormatUint(lo, 10)}, "to": {strconv.FormatUint(hi, 10)}}
			size, err := c.blocksOnce(ctx, name, q, nil, buf, fn, expected)
			if err != nil || hi == to || hi >= Blocks(size, blockSize) {
				return size, err // the range or the file ends here
			}
			lo = hi
		}
	}
	var size int64
	for first := true; first || len(idx) > 0; first = false {
		chunk := idx[:min(len(idx), MaxIndexes)]
		idx = idx[len(chunk):]
		body, err := AppendIndexes(nil, chunk)
		if err != nil {
			return 0, fmt.Errorf("blocks of %s: %w: %w", name, err, ErrRefused)
		}
		q := url.Values{"name": {name}, "bs": {strconv.Itoa(blockSize)}}
		j := 0 // blocks arrive in the order listed; past the end they are left out
		size, err = c.blocksOnce(ctx, name, q, body, buf, fn, func(i uint64) bool {
			for j < len(chunk) && chunk[j] < i {
				j++
			}
			if j == len(chunk) || chunk[j] != i {
				return false
			}
			j++
			return true
		})
		if err != nil {
			return 0, err
		}
	}
	return size, nil
}

// blocksOnce runs one blocks request; expected says whether a block's
// index is the next one allowed.
func (c *Client) blocksOnce(ctx context.Context, name string, q url.Values, body []byte, buf []byte, fn func(Block) error, expected func(uint64) bool) (int64, error) {
	var size int64
	err := c.do(ctx, http.MethodPost, PathBlocks, q, body, &c.blocks, func(d *Reader, hold func(func() error) error) error {
		var err error
		if size, err = d.BlocksHeader(); err != nil {
			return err
		}
		last := Blocks(size, len(buf))
		var b Block
		for {
			end, err := d.Block(&b, buf)
			if err != nil || end {
				return err
			}
			if b.Index >= last || !expected(b.Index) {
				return fmt.Errorf("the agent sent block %d, not asked for", b.Index)
			}
			if b.Kind == KindData && !d.Summed() && SumOf(b.Data) != b.Sum {
				return fmt.Errorf("block %d: %w (corrupted in transit)", b.Index, ErrCorrupt)
			}
			if err := hold(func() error { return fn(b) }); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("blocks of %s: %w", name, err)
	}
	return size, nil
}

// stallError ends a response stream that paused longer than the timeout.
type stallError struct{ d time.Duration }

func (e stallError) Error() string {
	return fmt.Sprintf("the agent sent nothing for %s", e.d)
}

// do sends one request and hands a 200 body to read; it maps refusals
// to the package's errors with the agent's message.
// read gets the body's frames, and hold, which runs a callback with the
// stall timer stopped: a slow consumer is not a stalled agent.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, counter *atomic.Int64, read func(d *Reader, hold func(func() error) error) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path+"?"+q.Encode(), rb)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	// A stalled stream is ended after the timeout; every read re-arms it.
	stall := time.AfterFunc(c.timeout, func() { cancel(stallError{c.timeout}) })
	defer stall.Stop()
	r := &countingReader{r: resp.Body, n: counter, arm: func() { stall.Reset(c.timeout) }}
	hold := func(f func() error) error {
		stall.Stop()
		defer stall.Reset(c.timeout)
		return f()
	}
	if err := read(NewReader(r), hold); err != nil {
		if cause := context.Cause(ctx); ctx.Err() != nil && !errors.Is(err, cause) {
			return fmt.Errorf("%w (%w)", err, cause)
		}
		return err
	}
	return nil
}

// statusError turns a refusal into an error wrapping the matching sentinel.
func statusError(resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	text := strings.TrimSpace(string(msg))
	// An agent of another version has no such path: 404 or 405 without
	// this version's header, not a missing file.
	if v := resp.Header.Get(HeaderVersion); v != Version &&
		(resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed) {
		if v == "" {
			v = "1 or unknown"
		}
		return fmt.Errorf("%w: it answered %s as protocol %s; this plugin speaks %s (block sums %s): upgrade the agent and the plugin together", ErrVersion, resp.Status, v, Version, SumName)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, text)
	case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: %s", ErrRefused, text)
	}
	return fmt.Errorf("the agent answered %s: %s", resp.Status, text)
}

// countingReader counts the bytes read and re-arms the stall timer.
type countingReader struct {
	r   io.Reader
	n   *atomic.Int64
	arm func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if n > 0 {
		c.arm()
	}
	return n, err
}
