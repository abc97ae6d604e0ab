package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collect streams blocks into a map, copying their data.
func collect(t *testing.T, c agentproto.Source, name string, bs int, from, to uint64, idx []uint64) (int64, []agentproto.Block) {
	t.Helper()
	var got []agentproto.Block
	size, err := c.Blocks(context.Background(), name, bs, from, to, idx, func(b agentproto.Block) error {
		b.Data = bytes.Clone(b.Data)
		got = append(got, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return size, got
}

// checkBlocks compares streamed blocks with the file's content.
func checkBlocks(t *testing.T, data []byte, bs int, want []uint64, got []agentproto.Block) {
	t.Helper()
	local := localSums(data, bs)
	if len(got) != len(want) {
		t.Fatalf("got %d blocks, want %d", len(got), len(want))
	}
	for i, b := range got {
		if b.Index != want[i] {
			t.Fatalf("block %d is index %d, want %d", i, b.Index, want[i])
		}
		if b.Kind != local.Kinds[b.Index] || b.Sum != local.Sums[b.Index] {
			t.Fatalf("block %d: kind %d sum %x, want kind %d sum %x", b.Index, b.Kind, b.Sum[:4], local.Kinds[b.Index], local.Sums[b.Index][:4])
		}
		if b.Kind == agentproto.KindZero {
			if b.Data != nil {
				t.Fatalf("zero block %d carries %d bytes", b.Index, len(b.Data))
			}
			continue
		}
		off := int(b.Index) * bs
		if !bytes.Equal(b.Data, data[off:min(len(data), off+bs)]) {
			t.Fatalf("block %d: data differs from the file's", b.Index)
		}
	}
}

func TestSumsAndBlocksMatchTheFile(t *testing.T) {
	e := newEnv(t)
	const bs = 4096
	data := pattern(40*bs+123, 1) // a short last block
	copy(data[3*bs:5*bs], make([]byte, 2*bs))
	e.write(t, "volume-a", data)
	c := e.client(t, agentproto.ClientConfig{})

	sums, err := c.Sums(context.Background(), "volume-a", bs)
	if err != nil {
		t.Fatal(err)
	}
	want := localSums(data, bs)
	if sums.Size != want.Size || sums.BlockSize != bs || fmt.Sprint(sums.Kinds) != fmt.Sprint(want.Kinds) || fmt.Sprint(sums.Sums) != fmt.Sprint(want.Sums) {
		t.Fatalf("sums differ from a local computation:\n got %v\nwant %v", sums.Kinds, want.Kinds)
	}
	if sums.Kinds[3] != agentproto.KindZero || sums.Kinds[0] != agentproto.KindData {
		t.Fatalf("kinds %v: want block 3 zero and block 0 data", sums.Kinds)
	}

	size, got := collect(t, c, "volume-a", bs, 0, 1000, nil)
	if size != int64(len(data)) {
		t.Fatalf("size %d, want %d", size, len(data))
	}
	all := make([]uint64, 41)
	for i := range all {
		all[i] = uint64(i)
	}
	checkBlocks(t, data, bs, all, got)

	_, got = collect(t, c, "volume-a", bs, 2, 6, nil)
	checkBlocks(t, data, bs, all[2:6], got)

	// Listed blocks; those past the end are left out.
	_, got = collect(t, c, "volume-a", bs, 0, 0, []uint64{0, 3, 7, 40, 41, 5000})
	checkBlocks(t, data, bs, []uint64{0, 3, 7, 40}, got)

	// An empty list still reads the size.
	size, got = collect(t, c, "volume-a", bs, 0, 0, []uint64{})
	if size != int64(len(data)) || len(got) != 0 {
		t.Fatalf("empty list: size %d, %d blocks", size, len(got))
	}

	st := e.srv.Stats()
	if st.BlocksSummed != 41 || st.BlocksServed != 41+4+4 {
		t.Fatalf("stats %+v: want 41 summed, 49 served", st)
	}
	rx := c.Received()
	if rx.Sums < 16+41 || rx.Blocks < st.BytesServed {
		t.Fatalf("received %+v, served %+v", rx, st)
	}
}

func TestBlockSizes(t *testing.T) {
	e := newEnv(t)
	data := pattern(3<<20+5, 2)
	e.write(t, "volume-b", data)
	c := e.client(t, agentproto.ClientConfig{})
	for _, bs := range []int{agentproto.MinBlockSize, agentproto.DefaultBlockSize, agentproto.MaxBlockSize} {
		sums, err := c.Sums(context.Background(), "volume-b", bs)
		if err != nil {
			t.Fatal(err)
		}
		if want := localSums(data, bs); fmt.Sprint(sums.Sums) != fmt.Sprint(want.Sums) {
			t.Fatalf("block size %d: sums differ", bs)
		}
	}
	if _, err := c.Sums(context.Background(), "volume-b", 5000); !errors.Is(err, agentproto.ErrRefused) {
		t.Fatalf("block size 5000: %v, want ErrRefused", err)
	}
}

// TestSparseHolesAreNotRead: a 1 GiB file with two data blocks is summed
// and streamed reading those blocks only.
func TestSparseHolesAreNotRead(t *testing.T) {
	e := newEnv(t)
	const bs = agentproto.DefaultBlockSize
	p := filepath.Join(e.dir, "volume-sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	d1, d2 := pattern(bs, 3), pattern(100, 4)
	_, err1 := f.WriteAt(d1, 7*bs)
	_, err2 := f.WriteAt(d2, 1<<30-100)
	_, err3 := f.WriteAt(make([]byte, bs), 9*bs) // written zeros: data on disk, yet KindZero
	if err := errors.Join(err1, err2, err3, f.Close()); err != nil {
		t.Fatal(err)
	}
	holesSeen(t, p, 7*bs)
	c := e.client(t, agentproto.ClientConfig{})

	sums, err := c.Sums(context.Background(), "volume-sparse", bs)
	if err != nil {
		t.Fatal(err)
	}
	n := (1 << 30) / bs
	var data []int
	for i, k := range sums.Kinds {
		if k == agentproto.KindData {
			data = append(data, i)
		}
	}
	if len(sums.Kinds) != n || fmt.Sprint(data) != fmt.Sprint([]int{7, n - 1}) {
		t.Fatalf("%d blocks, data blocks %v: want %d, [7 %d]", len(sums.Kinds), data, n, n-1)
	}
	if sums.Sums[7] != agentproto.SumOf(d1) {
		t.Fatal("block 7's sum is wrong")
	}
	// Read: the two data blocks (the last in full) and the written zeros.
	if got, max := e.srv.Stats().BytesRead, int64(4*bs); got > max {
		t.Fatalf("summing read %d bytes of a sparse file, want at most %d: holes were read", got, max)
	}

	before, requests := e.srv.Stats().BytesRead, e.srv.Stats().Requests
	_, got := collect(t, c, "volume-sparse", bs, 0, uint64(n), nil)
	if len(got) != n {
		t.Fatalf("%d blocks streamed, want %d", len(got), n)
	}
	if got[7].Kind != agentproto.KindData || !bytes.Equal(got[7].Data, d1) || got[9].Kind != agentproto.KindZero || got[9].Data != nil {
		t.Fatal("blocks 7 and 9 are not data and zero")
	}
	// A range comes in runs: each data block is read at most twice (to
	// find that it is not zeros, then sent), the written zeros once.
	if read := e.srv.Stats().BytesRead - before; read > int64(5*bs) {
		t.Fatalf("streaming read %d bytes of a sparse file: holes were read", read)
	}
	if r, want := e.srv.Stats().Requests-requests, int64(1<<30/agentproto.RunRequestBytes); r != want {
		t.Fatalf("the range took %d requests, want %d of at most %d bytes", r, want, agentproto.RunRequestBytes)
	}
	if rx := c.Received().Blocks; rx > int64(n*10+2*bs) {
		t.Fatalf("received %d bytes of blocks for 2 data blocks: zero blocks carried data", rx)
	}
}

func TestRefusedNamesAndFiles(t *testing.T) {
	e := newEnv(t)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, pattern(8192, 5), 0o600); err != nil {
		t.Fatal(err)
	}
	e.write(t, "volume-ok", pattern(8192, 6))
	e.write(t, ".hidden", pattern(8192, 6))
	if err := os.Symlink(outside, filepath.Join(e.dir, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("volume-ok", filepath.Join(e.dir, "link-in")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(e.dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	e.write(t, "sub/b", pattern(8192, 7))
	c := e.client(t, agentproto.ClientConfig{})

	cases := []struct {
		name, why string
		want      error
	}{
		{"../x", "is a path", agentproto.ErrRefused},
		{"..", "starts with a dot", agentproto.ErrRefused},
		{"/etc/passwd", "is a path", agentproto.ErrRefused},
		{"sub/b", "is a path", agentproto.ErrRefused},
		{`sub\b`, "is a path", agentproto.ErrRefused},
		{"a\x00b", "is a path", agentproto.ErrRefused},
		{".hidden", "starts with a dot", agentproto.ErrRefused},
		{"", "no file name", agentproto.ErrRefused},
		{"link-out", "symbolic link", agentproto.ErrRefused},
		{"link-in", "symbolic link", agentproto.ErrRefused},
		{"fifo", "not a regular file", agentproto.ErrRefused},
		{"sub", "is a directory", agentproto.ErrRefused},
		{"missing", "no file", agentproto.ErrNotFound},
	}
	for _, tc := range cases {
		_, err := c.Sums(context.Background(), tc.name, 4096)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("sums of %q: %v, want %v saying %q", tc.name, err, tc.want, tc.why)
		}
		called := false
		_, err = c.Blocks(context.Background(), tc.name, 4096, 0, 2, nil, func(agentproto.Block) error { called = true; return nil })
		if !errors.Is(err, tc.want) || called {
			t.Errorf("blocks of %q: %v (fn called %v), want %v", tc.name, err, called, tc.want)
		}
	}
	st := e.srv.Stats()
	if st.BytesRead != 0 || st.BlocksServed != 0 || st.BlocksSummed != 0 {
		t.Fatalf("refused requests read or served data: %+v", st)
	}
	if st.Refused != int64(2*len(cases)) {
		t.Fatalf("%d refusals counted, want %d", st.Refused, 2*len(cases))
	}
	if !strings.Contains(e.log.String(), "symbolic link") || !strings.Contains(e.log.String(), "request refused") {
		t.Fatalf("refusals not logged:\n%s", e.log)
	}
	// The one good file is served.
	if _, err := c.Sums(context.Background(), "volume-ok", 4096); err != nil {
		t.Fatal(err)
	}
}

func TestUnauthorizedCallersGetNothing(t *testing.T) {
	e := newEnv(t)
	e.write(t, "volume-a", pattern(8192, 8))
	url := e.http.URL + agentproto.PathSums + "?name=volume-a&bs=4096"
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + string(token) + "x", "Basic " + string(token), string(token)} {
		status, body := rawDo(t, http.MethodGet, url, auth)
		if status != http.StatusUnauthorized || strings.TrimSpace(body) != "unauthorized" {
			t.Errorf("auth %q: %d %q, want 401 unauthorized", auth, status, body)
		}
	}
	status, _ := rawDo(t, http.MethodPost, e.http.URL+agentproto.PathBlocks+"?name=volume-a&bs=4096&from=0&to=2", "")
	if status != http.StatusUnauthorized {
		t.Errorf("blocks without a token: %d, want 401", status)
	}

	c := e.client(t, agentproto.ClientConfig{Token: []byte("wrong")})
	if _, err := c.Sums(context.Background(), "volume-a", 4096); !errors.Is(err, agentproto.ErrUnauthorized) {
		t.Fatalf("wrong token: %v, want ErrUnauthorized", err)
	}
	called := false
	if _, err := c.Blocks(context.Background(), "volume-a", 4096, 0, 2, nil, func(agentproto.Block) error { called = true; return nil }); !errors.Is(err, agentproto.ErrUnauthorized) || called {
		t.Fatalf("wrong token: %v, fn called %v", err, called)
	}
	st := e.srv.Stats()
	if st.Unauthorized != 8 || st.BytesRead != 0 || st.BlocksSummed != 0 || st.BlocksServed != 0 {
		t.Fatalf("stats %+v: want 8 unauthorized and nothing read", st)
	}
	if strings.Contains(e.log.String(), string(token)) {
		t.Fatal("the token reached the log")
	}

	status, _ = rawDo(t, http.MethodGet, url, "Bearer "+string(token))
	if status != http.StatusOK {
		t.Fatalf("right token: %d", status)
	}
}

func TestMutualTLS(t *testing.T) {
	e := newEnv(t) // its plain server is unused here
	e.write(t, "volume-a", pattern(8192, 9))
	p := testpki.New(t)
	cfg, err := agentTLS(p)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTLSServer(e, cfg)
	defer ts.Close()
	addr := ts.Listener.Addr().String()

	good, err := agentproto.NewClient(agentproto.ClientConfig{Address: addr, Token: token,
		TLS: &tls.Config{RootCAs: p.CAPool, Certificates: []tls.Certificate{p.Client}}})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := good.Sums(context.Background(), "volume-a", 4096); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}

	before := e.srv.Stats().Requests
	bad, err := agentproto.NewClient(agentproto.ClientConfig{Address: addr, Token: token, TLS: &tls.Config{RootCAs: p.CAPool}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Sums(context.Background(), "volume-a", 4096); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if got := e.srv.Stats().Requests; got != before {
		t.Fatalf("a client without a certificate reached the handler (%d requests)", got-before)
	}
}

// flipper flips one byte of every response body at offset at.
type flipper struct {
	rt http.RoundTripper
	at int64
}

func (f flipper) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.rt.RoundTrip(r)
	if err == nil {
		resp.Body = &flipBody{ReadCloser: resp.Body, at: f.at}
	}
	return resp, err
}

type flipBody struct {
	io.ReadCloser
	at, off int64
}

func (b *flipBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if i := b.at - b.off; i >= 0 && i < int64(n) {
		p[i] ^= 0x40
	}
	b.off += int64(n)
	return n, err
}

// TestClientCatchesACorruptBlock: a block the agent summed is checked
// (the blocks a delta sync asks for by index).
func TestClientCatchesACorruptBlock(t *testing.T) {
	e := newEnv(t)
	e.write(t, "volume-a", pattern(4*4096, 10))
	// Within block 1's data: header 8, block 0 frame 1+8+16+4+4096, block
	// 1's head 29, then 100 bytes in.
	head := int64(1 + 8 + agentproto.SumSize + 4)
	at := 8 + head + 4096 + head + 100
	c := e.client(t, agentproto.ClientConfig{Transport: flipper{rt: http.DefaultTransport, at: at}})
	var seen []uint64
	_, err := c.Blocks(context.Background(), "volume-a", 4096, 0, 0, []uint64{0, 1, 2, 3}, func(b agentproto.Block) error {
		seen = append(seen, b.Index)
		return nil
	})
	if !errors.Is(err, agentproto.ErrCorrupt) {
		t.Fatalf("a flipped byte in block 1: %v, want ErrCorrupt", err)
	}
	if fmt.Sprint(seen) != "[0]" {
		t.Fatalf("fn saw blocks %v, want only [0] (not the corrupt one)", seen)
	}
}

// TestRunsAreSummedByTheClient: a range (a first copy) comes in runs,
// unsummed: each block arrives with the sum of the data received, and a
// byte damaged in transit is not caught here (the first copy's closing
// delta sync catches it, see deltasync's TestFirstCopyDamagedInTransit).
func TestRunsAreSummedByTheClient(t *testing.T) {
	e := newEnv(t)
	data := pattern(4*4096, 10)
	copy(data[2*4096:3*4096], make([]byte, 4096)) // written zeros
	e.write(t, "volume-a", data)
	// Within block 1's data: header 8, the run's head 17, block 0, then
	// 100 bytes into block 1.
	at := int64(8 + agentproto.RunHeadSize + 4096 + 100)
	c := e.client(t, agentproto.ClientConfig{Transport: flipper{rt: http.DefaultTransport, at: at}})
	_, got := collect(t, c, "volume-a", 4096, 0, 4, nil)
	if len(got) != 4 || got[2].Kind != agentproto.KindZero || got[2].Data != nil {
		t.Fatalf("got %d blocks, block 2 %+v: want 4, block 2 zero", len(got), got[2].Kind)
	}
	for _, i := range []int{0, 1, 3} {
		if got[i].Kind != agentproto.KindData || got[i].Sum != agentproto.SumOf(got[i].Data) {
			t.Fatalf("block %d: kind %d, sum not of its data", i, got[i].Kind)
		}
	}
	if bytes.Equal(got[1].Data, data[4096:2*4096]) || !bytes.Equal(got[0].Data, data[:4096]) {
		t.Fatal("the flipped byte did not reach block 1 alone")
	}
	if st := e.srv.Stats(); st.BlocksSummed != 0 || st.BlocksServed != 4 {
		t.Fatalf("stats %+v: want no block summed by the agent, 4 served", st)
	}
}

// TestRunRequestIsBounded: a range with sums=0 longer than RunRequestBytes
// is refused; the client splits its ranges below it.
func TestRunRequestIsBounded(t *testing.T) {
	e := newEnv(t)
	e.write(t, "volume-a", pattern(4096, 1))
	blocks := agentproto.RunRequestBytes/4096 + 1
	url := fmt.Sprintf("%s%s?name=volume-a&bs=4096&from=0&to=%d&sums=0", e.http.URL, agentproto.PathBlocks, blocks)
	status, body := rawDo(t, http.MethodPost, url, "Bearer "+string(token))
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "at most") {
		t.Fatalf("a range of %d blocks: %d %.100q, want 413 naming the limit", blocks, status, body)
	}
}

// TestClientCancelStopsTheRead: a client that goes away mid-stream ends
// the agent's reading of the file.
func TestClientCancelStopsTheRead(t *testing.T) {
	e := newEnv(t)
	const size = 64 << 20
	e.write(t, "volume-big", pattern(size, 11))
	c := e.client(t, agentproto.ClientConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	blocks := 0
	_, err := c.Blocks(ctx, "volume-big", agentproto.DefaultBlockSize, 0, 1<<20, nil, func(agentproto.Block) error {
		blocks++
		if blocks == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled transfer: %v, want context.Canceled", err)
	}
	waitIdle(t, e)
	st := e.srv.Stats()
	if st.BytesRead >= size/2 {
		t.Fatalf("the agent read %d of %d bytes after the client left", st.BytesRead, size)
	}
	if !strings.Contains(e.log.String(), "client went away") {
		t.Fatalf("no log of the client leaving:\n%s", e.log)
	}
}

// waitIdle waits for the agent's handlers to return.
func waitIdle(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the agent still serves %d requests", e.srv.Stats().Active)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIndexLists(t *testing.T) {
	e := newEnv(t)
	data := pattern(8*4096, 12)
	e.write(t, "volume-a", data)
	c := e.client(t, agentproto.ClientConfig{})

	// A list longer than one request holds is split.
	idx := make([]uint64, agentproto.MaxIndexes+3)
	for i := range idx {
		idx[i] = uint64(i)
	}
	before := e.srv.Stats().Requests
	_, got := collect(t, c, "volume-a", 4096, 0, 0, idx)
	checkBlocks(t, data, 4096, idx[:8], got)
	if n := e.srv.Stats().Requests - before; n != 2 {
		t.Fatalf("%d requests for %d indexes, want 2", n, len(idx))
	}

	// Not increasing: refused by the client.
	if _, err := c.Blocks(context.Background(), "volume-a", 4096, 0, 0, []uint64{3, 3}, func(agentproto.Block) error { return nil }); !errors.Is(err, agentproto.ErrRefused) {
		t.Fatalf("repeated index: %v", err)
	}

	// Too many indexes in one request: 413.
	body := bytes.Repeat([]byte{1}, agentproto.MaxIndexes+1)
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+agentproto.PathBlocks+"?name=volume-a&bs=4096", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("too many indexes: %d, want 413", resp.StatusCode)
	}
}

// holesSeen skips the test unless the filesystem reports p's first data
// at want (some filesystems call a whole file data).
func holesSeen(t *testing.T, p string, want int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const seekData = 3 // SEEK_DATA on Linux
	if off, err := f.Seek(0, seekData); err != nil || off != want {
		t.Skipf("the filesystem of %s does not report holes (SEEK_DATA: %d, %v)", p, off, err)
	}
}

// TestOtherProtocolVersionsAreRefused: a plugin of protocol 1 (SHA-256
// sums) gets a 400 naming both versions, not a stream it would misread
// nor a 404 it would take for a missing file.
func TestOtherProtocolVersionsAreRefused(t *testing.T) {
	e := newEnv(t)
	e.write(t, "volume-a", pattern(8192, 8))
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/sums?name=volume-a&bs=4096"},
		{http.MethodPost, "/v1/blocks?name=volume-a&bs=4096&from=0&to=2"},
		{http.MethodGet, "/v3/sums?name=volume-a&bs=4096"},
	} {
		status, body := rawDo(t, tc.method, e.http.URL+tc.path, "Bearer "+string(token))
		if status != http.StatusBadRequest || !strings.Contains(body, "protocol v2") || !strings.Contains(body, agentproto.SumName) {
			t.Errorf("%s %s: %d %q, want 400 naming protocol v2 and %s", tc.method, tc.path, status, body, agentproto.SumName)
		}
	}
	if status, _ := rawDo(t, http.MethodGet, e.http.URL+"/other", "Bearer "+string(token)); status != http.StatusNotFound {
		t.Errorf("GET /other: %d, want 404", status)
	}
	if st := e.srv.Stats(); st.BytesRead != 0 {
		t.Errorf("stats %+v: want nothing read", st)
	}
	// The client sees the version on every answer, a missing file too.
	c := e.client(t, agentproto.ClientConfig{})
	if _, err := c.Sums(context.Background(), "volume-none", 4096); !errors.Is(err, agentproto.ErrNotFound) {
		t.Fatalf("a missing file: %v, want ErrNotFound", err)
	}
}
