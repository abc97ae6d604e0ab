// Package agentproto is the protocol between the source agent, which runs
// next to a file storage, and the nfs plugin, which copies the storage's
// volume files to the target: block sums and block data of one file.
package agentproto

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zeebo/xxh3"
)

// DefaultBlockSize is the block size the plugin asks for unless the
// storage's metadata names another.
const DefaultBlockSize = 64 << 10

// Block sizes the agent accepts: powers of two in [MinBlockSize, MaxBlockSize].
const (
	MinBlockSize = 4 << 10
	MaxBlockSize = 4 << 20
)

// Kind says whether a block holds data.
type Kind uint8

const (
	// KindZero is a block that is all zero or a hole: no data is sent,
	// and the target keeps it sparse.
	KindZero Kind = 0
	// KindData is a block holding data.
	KindData Kind = 1
)

// SumName names the block sum, as the wire and the docs call it.
const SumName = "xxh3-128"

// SumSize is the length of a Sum in bytes.
const SumSize = 16

// Sum is the XXH3-128 of a block's bytes (seed 0), its high 64 bits then
// its low 64 bits, each big-endian. A fast non-cryptographic hash, as
// rsync uses for its block checksums: it finds changed blocks and data
// damaged in transit or on disk, not data forged to collide, which only
// a writer of the source files could make (and then only to hide their
// own change from the copy).
type Sum [SumSize]byte

// SumOf is the sum of data.
func SumOf(data []byte) Sum {
	h := xxh3.Hash128(data)
	var s Sum
	binary.BigEndian.PutUint64(s[:8], h.Hi)
	binary.BigEndian.PutUint64(s[8:], h.Lo)
	return s
}

// Sums are the kind and sum of every block of a file, read at one time.
type Sums struct {
	Size      int64
	BlockSize int
	Kinds     []Kind
	Sums      []Sum // zero for a KindZero block
}

// Block is one block as sent: its data (KindData only; the last block of
// a file may be short) and the sum of that data.
type Block struct {
	Index uint64
	Kind  Kind
	Sum   Sum
	Data  []byte
}

// Source is a volume file's source as the plugin reads it: through the
// agent, or a local directory in tests.
type Source interface {
	// Sums reads the whole file now and returns each block's kind and sum.
	Sums(ctx context.Context, name string, blockSize int) (Sums, error)
	// Blocks streams blocks in index order: those listed in idx, or,
	// with idx nil, every block of [from, to). Each block is as read now
	// (one that changed since Sums comes as it is now), and its Sum is
	// the sum of its Data as fn gets it: a Source checks the sums it is
	// sent, or computes them, so that a copy's index never holds a sum
	// its data does not have. fn's Data is valid only during the call. It
	// returns the file's size as read now; blocks at or past that end
	// are not sent.
	Blocks(ctx context.Context, name string, blockSize int, from, to uint64, idx []uint64, fn func(Block) error) (size int64, err error)
}

// Errors a Source returns, wrapped with context.
var (
	// ErrNotFound: no such file in the agent's directory.
	ErrNotFound = errors.New("no such volume file")
	// ErrUnauthorized: the agent refused the caller's credentials.
	ErrUnauthorized = errors.New("the agent refused the credentials")
	// ErrRefused: the name is not a plain file directly in the agent's
	// directory (a path, a symlink, a device), or the request is invalid.
	ErrRefused = errors.New("refused by the agent")
	// ErrVersion: the agent speaks another version of the protocol.
	ErrVersion = errors.New("the agent speaks another protocol version")
)

// CheckBlockSize returns an error unless n is a block size agents accept.
func CheckBlockSize(n int) error {
	if n < MinBlockSize || n > MaxBlockSize || n&(n-1) != 0 {
		return fmt.Errorf("block size %d: want a power of two from %d to %d: %w", n, MinBlockSize, MaxBlockSize, ErrRefused)
	}
	return nil
}

// Blocks is how many blocks of blockSize a file of size bytes has.
func Blocks(size int64, blockSize int) uint64 {
	return uint64((size + int64(blockSize) - 1) / int64(blockSize))
}

// zeros is compared against to find all-zero blocks.
var zeros [MaxBlockSize]byte

// IsZero says whether b is all zero bytes: such a block is KindZero.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeros))
		if !bytes.Equal(b[:k], zeros[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}
