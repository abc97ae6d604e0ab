// Package agentproto is the protocol between the source agent, which runs
// next to a file storage, and the nfs plugin, which copies the storage's
// volume files to the target: block sums and block data of one file.
package agentproto

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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

// Sum is the SHA-256 of a block's bytes.
type Sum [sha256.Size]byte

// SumOf is the sum of data.
func SumOf(data []byte) Sum { return sha256.Sum256(data) }

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
	// with idx nil, every block of [from, to). Each block's Sum is of the
	// data actually sent (read now), so a block that changed since Sums
	// is sent as it is now. fn's Data is valid only during the call. It
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
