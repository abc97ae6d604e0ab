package agentproto

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stallingAgent sends one zero block, then nothing until the client
// leaves.
func stallingAgent(w http.ResponseWriter, r *http.Request) {
	b := AppendBlocksHeader(nil, 1<<20)
	b = AppendBlockHead(b, 0, KindZero, nil, 0)
	w.Write(b)
	http.NewResponseController(w).Flush()
	<-r.Context().Done()
}

func TestAStalledStreamEnds(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(stallingAgent))
	defer ts.Close()
	c, err := NewClient(ClientConfig{Address: strings.TrimPrefix(ts.URL, "http://"), Token: []byte("t"), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	_, err = c.Blocks(context.Background(), "v", 4096, 0, 256, nil, func(Block) error { n++; return nil })
	if err == nil || !strings.Contains(err.Error(), "sent nothing for 100ms") || n != 1 {
		t.Fatalf("a stalled stream after %d blocks: %v, want an error naming the stall", n, err)
	}
}

// TestASlowConsumerIsNotAStall: time spent in fn does not count as the
// agent's silence.
func TestASlowConsumerIsNotAStall(t *testing.T) {
	inFn := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(AppendBlockHead(AppendBlocksHeader(nil, 8192), 0, KindZero, nil, 0))
		http.NewResponseController(w).Flush()
		<-inFn // the rest must be read from the network after fn
		w.Write(AppendEnd(AppendBlockHead(nil, 1, KindZero, nil, 0), 2))
	}))
	defer ts.Close()
	c, err := NewClient(ClientConfig{Address: strings.TrimPrefix(ts.URL, "http://"), Token: []byte("t"), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Blocks(context.Background(), "v", 4096, 0, 2, nil, func(b Block) error {
		if b.Index == 0 {
			close(inFn)
			time.Sleep(300 * time.Millisecond) // a slow disk on the plugin's side
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a slow consumer: %v", err)
	}
}

func TestStatusesMapToErrors(t *testing.T) {
	for status, want := range map[int]error{
		http.StatusUnauthorized:          ErrUnauthorized,
		http.StatusNotFound:              ErrNotFound,
		http.StatusBadRequest:            ErrRefused,
		http.StatusRequestEntityTooLarge: ErrRefused,
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(HeaderVersion, Version)
			http.Error(w, "the agent's reason", status)
		}))
		c, _ := NewClient(ClientConfig{Address: strings.TrimPrefix(ts.URL, "http://"), Token: []byte("t")})
		_, err := c.Sums(context.Background(), "v", 4096)
		c.Close()
		ts.Close()
		if !errors.Is(err, want) {
			t.Errorf("status %d: %v, want %v", status, err, want)
		}
		if status != http.StatusUnauthorized && !strings.Contains(err.Error(), "the agent's reason") {
			t.Errorf("status %d: %v lacks the agent's message", status, err)
		}
	}
}

// TestAnOldAgentFailsClearly: an agent of protocol 1 has no /v2 paths; its
// 404 (no version header) is a version mismatch, not a missing file.
func TestAnOldAgentFailsClearly(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler()) // as an old agent's mux answers /v2/...
	defer ts.Close()
	c, _ := NewClient(ClientConfig{Address: strings.TrimPrefix(ts.URL, "http://"), Token: []byte("t")})
	defer c.Close()
	_, err := c.Sums(context.Background(), "v", 4096)
	if !errors.Is(err, ErrVersion) || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), SumName) {
		t.Fatalf("an old agent: %v, want ErrVersion naming %s", err, SumName)
	}
}

func TestSumIsXXH3128BigEndian(t *testing.T) {
	// XXH3-128 of the empty input, seed 0, as the reference implementation
	// gives it: hi 99aa06d3014798d8, lo 6001c324468d497f.
	want := Sum{0x99, 0xaa, 0x06, 0xd3, 0x01, 0x47, 0x98, 0xd8, 0x60, 0x01, 0xc3, 0x24, 0x46, 0x8d, 0x49, 0x7f}
	if got := SumOf(nil); got != want {
		t.Fatalf("SumOf(nil) = %x, want %x", got, want)
	}
}
