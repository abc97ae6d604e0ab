package deltasync

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// The index file ("sums"): a header, then kind and sum of every block, then
// the SHA-256 of all that, so a damaged index is noticed and rebuilt. The
// magic's last byte is the version: 2 holds agentproto's 16-byte XXH3-128
// sums; an index of another version (1: SHA-256) is not misread but
// rebuilt from the copy, like a damaged one.
var indexMagic = [8]byte{'M', 'I', 'R', 'S', 'U', 'M', 'S', '2'}

// indexRecordLen is one block's record: its kind, then its sum.
const indexRecordLen = 1 + agentproto.SumSize

const indexHeaderLen = 8 + 4 + 8 + 8

// newIndex is the index of a file of size bytes that is all holes.
func newIndex(size int64, blockSize int) agentproto.Sums {
	n := agentproto.Blocks(size, blockSize)
	return agentproto.Sums{Size: size, BlockSize: blockSize, Kinds: make([]agentproto.Kind, n), Sums: make([]agentproto.Sum, n)}
}

// resizeIndex makes idx describe a file of size bytes: blocks past the end
// are dropped, new ones are holes.
func resizeIndex(idx *agentproto.Sums, size int64) {
	n := int(agentproto.Blocks(size, idx.BlockSize))
	if n <= len(idx.Kinds) {
		idx.Kinds, idx.Sums = idx.Kinds[:n], idx.Sums[:n]
	} else {
		idx.Kinds = append(idx.Kinds, make([]agentproto.Kind, n-len(idx.Kinds))...)
		idx.Sums = append(idx.Sums, make([]agentproto.Sum, n-len(idx.Sums))...)
	}
	idx.Size = size
}

func encodeIndex(idx agentproto.Sums) []byte {
	var b bytes.Buffer
	b.Grow(indexHeaderLen + len(idx.Kinds)*indexRecordLen + sha256.Size)
	b.Write(indexMagic[:])
	binary.Write(&b, binary.LittleEndian, uint32(idx.BlockSize))
	binary.Write(&b, binary.LittleEndian, idx.Size)
	binary.Write(&b, binary.LittleEndian, uint64(len(idx.Kinds)))
	for i, k := range idx.Kinds {
		b.WriteByte(byte(k))
		b.Write(idx.Sums[i][:])
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

var errBadIndex = errors.New("damaged index")

func decodeIndex(data []byte) (agentproto.Sums, error) {
	if len(data) < indexHeaderLen+sha256.Size {
		return agentproto.Sums{}, fmt.Errorf("%w: %d bytes", errBadIndex, len(data))
	}
	if !bytes.Equal(data[:7], indexMagic[:7]) {
		return agentproto.Sums{}, fmt.Errorf("%w: not an index", errBadIndex)
	}
	if data[7] != indexMagic[7] {
		return agentproto.Sums{}, fmt.Errorf("%w: version %c, want %c", errBadIndex, data[7], indexMagic[7])
	}
	body, trailer := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		return agentproto.Sums{}, fmt.Errorf("%w: checksum mismatch", errBadIndex)
	}
	bs := int(binary.LittleEndian.Uint32(body[8:]))
	size := int64(binary.LittleEndian.Uint64(body[12:]))
	n := binary.LittleEndian.Uint64(body[20:])
	if size < 0 || agentproto.CheckBlockSize(bs) != nil || n != agentproto.Blocks(size, bs) ||
		uint64(len(body)-indexHeaderLen) != n*indexRecordLen {
		return agentproto.Sums{}, fmt.Errorf("%w: inconsistent header", errBadIndex)
	}
	idx := newIndex(size, bs)
	rec := body[indexHeaderLen:]
	for i := range idx.Kinds {
		idx.Kinds[i] = agentproto.Kind(rec[0])
		copy(idx.Sums[i][:], rec[1:indexRecordLen])
		rec = rec[indexRecordLen:]
	}
	return idx, nil
}

func readIndex(path string) (agentproto.Sums, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return agentproto.Sums{}, fmt.Errorf("read index: %w", err)
	}
	idx, err := decodeIndex(data)
	if err != nil {
		return agentproto.Sums{}, fmt.Errorf("read index %s: %w", path, err)
	}
	return idx, nil
}

// indexOfFile reads the file at path and returns the kind and sum of each
// of its blocks: how a lost or damaged index is rebuilt from the copy.
func indexOfFile(path string, blockSize int) (agentproto.Sums, error) {
	f, err := os.Open(path)
	if err != nil {
		return agentproto.Sums{}, fmt.Errorf("rebuild index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return agentproto.Sums{}, fmt.Errorf("rebuild index: %w", err)
	}
	idx := newIndex(fi.Size(), blockSize)
	buf := make([]byte, blockSize)
	for i := range idx.Kinds {
		n, err := f.ReadAt(buf, int64(i)*int64(blockSize))
		if err != nil && !errors.Is(err, io.EOF) {
			return agentproto.Sums{}, fmt.Errorf("rebuild index from %s: %w", path, err)
		}
		if !agentproto.IsZero(buf[:n]) {
			idx.Kinds[i] = agentproto.KindData
			idx.Sums[i] = agentproto.SumOf(buf[:n])
		}
	}
	return idx, nil
}
