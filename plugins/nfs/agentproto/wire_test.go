package agentproto

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestIndexesRoundTrip(t *testing.T) {
	idx := []uint64{0, 1, 2, 300, 1 << 40, 1<<64 - 1}
	b, err := AppendIndexes(nil, idx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadIndexes(bytes.NewReader(b), 10)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(idx) {
		t.Fatalf("got %v, %v; want %v", got, err, idx)
	}
	if _, err := ReadIndexes(bytes.NewReader(b), 5); err == nil {
		t.Fatal("6 indexes read with a limit of 5")
	}
	if _, err := AppendIndexes(nil, []uint64{5, 5}); err == nil {
		t.Fatal("a repeated index was encoded")
	}
	if _, err := ReadIndexes(bytes.NewReader([]byte{5, 0}), 10); err == nil {
		t.Fatal("a zero difference was decoded")
	}
}

// blocksStream is a good stream of two blocks.
func blocksStream() []byte {
	data := []byte("hello")
	sum := SumOf(data)
	b := AppendBlocksHeader(nil, 5000)
	b = AppendBlockHead(b, 0, KindData, &sum, len(data))
	b = append(b, data...)
	b = AppendBlockHead(b, 1, KindZero, nil, 0)
	return AppendEnd(b, 2)
}

func readBlocks(b []byte) (int, error) {
	d := NewReader(bytes.NewReader(b))
	if _, err := d.BlocksHeader(); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for n := 0; ; n++ {
		var blk Block
		end, err := d.Block(&blk, buf)
		if err != nil || end {
			return n, err
		}
	}
}

func TestStreamsMustEnd(t *testing.T) {
	good := blocksStream()
	if n, err := readBlocks(good); err != nil || n != 2 {
		t.Fatalf("a good stream: %d blocks, %v", n, err)
	}
	for cut := range len(good) {
		if _, err := readBlocks(good[:cut]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("a stream cut at %d of %d: %v, want ErrIncomplete", cut, len(good), err)
		}
	}
	// An end frame with the wrong count, an error frame, a bad tag.
	bad := append(bytes.Clone(good[:len(good)-9]), AppendEnd(nil, 3)...)
	if _, err := readBlocks(bad); err == nil {
		t.Fatal("a wrong count was accepted")
	}
	failed := append(bytes.Clone(good[:len(good)-9]), AppendError(nil, "read block 2: EIO")...)
	if _, err := readBlocks(failed); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("an error frame: %v", err)
	}
	if _, err := readBlocks(append(AppendBlocksHeader(nil, 1), 7)); err == nil {
		t.Fatal("a bad tag was accepted")
	}
}
