package agentproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The wire protocol, version 2, HTTP/1.1 (over TLS when configured).
// Every request carries "Authorization: Bearer <token>"; a missing or
// wrong token gets 401 and nothing else. A name is one path element of
// the agent's directory, sent as the query parameter "name"; bs is the
// block size.
//
//	GET  /v2/sums?name=N&bs=B                  the kind and sum of every block
//	POST /v2/blocks?name=N&bs=B&from=F&to=T    every block of [F, T)
//	POST /v2/blocks?name=N&bs=B                the blocks listed in the body
//	POST /v2/blocks?name=N&bs=B&from=F&to=T&sums=0
//	                                           [F, T), data in runs
//
// The version is in the path because it fixes the block sum: in v2 a sum
// is 16 bytes, the XXH3-128 of the block (see Sum); v1 sent SHA-256. An
// agent answers a request for another version with 400 and a message
// naming both, and sets the header "Mirror-Agent-Protocol: 2" on every
// response, so a plugin that gets a 404 without it knows the agent is of
// another version rather than missing the file.
//
// The list of a blocks request is its indexes, strictly increasing, each
// as a uvarint of its difference from the previous one (the first: from
// zero), at most MaxIndexes of them.
//
// A refusal is a status with a one-line text/plain message: 400 a bad
// name or request, a symlink or a file that is not regular; 404 no such
// file; 413 too many indexes; 401 bad credentials. A 200 body is a
// stream of frames, integers big-endian:
//
//	sums:   size u64, blocks u64, then per block in order
//	        0 (KindZero) | 1 (KindData) sum[16], then the end frame
//	blocks: size u64, then per block sent, in index order,
//	        0 index u64 | 1 index u64 sum[16] len u32 data[len]
//	        | 2 index u64 len u64 data[len] (a run: sums=0 only),
//	        then the end frame
//	end:    0xFF count u64 (records sent before it)
//	error:  0xFE len u16 message[len] — the agent failed mid-stream
//
// A run holds the data of consecutive blocks from index on, each a whole
// block but for the file's last, and no sums: with sums=0 (asked by the
// first copy) the agent sends data straight from the file (sendfile),
// neither reading nor summing it, and the caller sums what it received.
// Each block of a run counts as one record. The first copy is checked
// end to end all the same: it ends with a delta sync, which compares the
// agent's sums of every block with the caller's. An agent without runs
// ignores sums=0 and sends summed frames, which a caller must accept. A
// range with sums=0 covers at most RunRequestBytes (413 beyond).
//
// Size is the file's size when the request began; blocks at or past its
// end are not sent. A body that ends without its end frame is incomplete:
// the reader returns an error, never a short success.
//
// Version is the protocol's version, as in the paths and the header.
const Version = "2"

// HeaderVersion is the response header in which an agent names its
// protocol version.
const HeaderVersion = "Mirror-Agent-Protocol"

// PathSums and PathBlocks are the URL paths of the agent's endpoints.
const (
	PathSums   = "/v" + Version + "/sums"
	PathBlocks = "/v" + Version + "/blocks"
)

// RunRequestBytes is the most of a file one range request with sums=0
// may cover (the agent looks at every block of it before it answers);
// the client splits a longer range.
const RunRequestBytes = 256 << 20

// MaxIndexes is the most block indexes one blocks request may list; the
// client splits longer lists.
const MaxIndexes = 1 << 20

// MaxIndexBody bounds a blocks request's body: MaxIndexes uvarints.
const MaxIndexBody = MaxIndexes * binary.MaxVarintLen64

// Frame tags besides the kinds.
const (
	tagRun   byte = 0x02
	tagError byte = 0xFE
	tagEnd   byte = 0xFF
)

// Lengths of fixed frames, for a body's length computed before it is sent.
const (
	BlocksHeaderSize = 8         // size
	ZeroFrameSize    = 1 + 8     // tag, index
	RunHeadSize      = 1 + 8 + 8 // tag, index, len
	EndFrameSize     = 1 + 8     // tag, count
)

// ErrTooManyIndexes: an index list holds more than a request may.
var ErrTooManyIndexes = errors.New("too many block indexes")

// ErrIncomplete: a response stream ended before its end frame.
var ErrIncomplete = errors.New("the agent's response ended before it was complete")

// AppendIndexes appends the encoding of idx (strictly increasing) to b.
func AppendIndexes(b []byte, idx []uint64) ([]byte, error) {
	var prev uint64
	for i, x := range idx {
		if i > 0 && x <= prev {
			return b, fmt.Errorf("block indexes not strictly increasing at %d: %d after %d", i, x, prev)
		}
		b = binary.AppendUvarint(b, x-prev)
		prev = x
	}
	return b, nil
}

// ReadIndexes decodes an index list of at most max indexes from r.
func ReadIndexes(r io.ByteReader, max int) ([]uint64, error) {
	var idx []uint64
	var prev uint64
	for {
		d, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return idx, nil
		}
		if err != nil {
			return nil, fmt.Errorf("index list: %w", err)
		}
		if len(idx) == max {
			return nil, fmt.Errorf("index list: more than %d: %w", max, ErrTooManyIndexes)
		}
		if len(idx) > 0 && d == 0 {
			return nil, fmt.Errorf("index list: not strictly increasing at %d", len(idx))
		}
		x := prev + d
		if x < prev {
			return nil, fmt.Errorf("index list: index overflows at %d", len(idx))
		}
		idx = append(idx, x)
		prev = x
	}
}

// AppendSumsHeader appends the head of a sums stream.
func AppendSumsHeader(b []byte, size int64, blocks uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	return binary.BigEndian.AppendUint64(b, blocks)
}

// AppendSum appends one block's record of a sums stream.
func AppendSum(b []byte, kind Kind, sum *Sum) []byte {
	b = append(b, byte(kind))
	if kind == KindData {
		b = append(b, sum[:]...)
	}
	return b
}

// AppendBlocksHeader appends the head of a blocks stream.
func AppendBlocksHeader(b []byte, size int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(size))
}

// AppendBlockHead appends a block's frame up to its data, which follows
// (dataLen bytes; none for KindZero).
func AppendBlockHead(b []byte, index uint64, kind Kind, sum *Sum, dataLen int) []byte {
	b = append(b, byte(kind))
	b = binary.BigEndian.AppendUint64(b, index)
	if kind == KindData {
		b = append(b, sum[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(dataLen))
	}
	return b
}

// AppendRunHead appends a run's frame up to its data, which follows
// (dataLen bytes).
func AppendRunHead(b []byte, index uint64, dataLen int64) []byte {
	b = append(b, tagRun)
	b = binary.BigEndian.AppendUint64(b, index)
	return binary.BigEndian.AppendUint64(b, uint64(dataLen))
}

// AppendEnd appends the end frame of a stream of count records.
func AppendEnd(b []byte, count uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, tagEnd), count)
}

// AppendError appends an error frame: the stream stops with msg.
func AppendError(b []byte, msg string) []byte {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	b = append(b, tagError)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// Reader decodes a response stream.
type Reader struct {
	r     *bufio.Reader
	count uint64 // records read

	runNext uint64 // the next block of the run being read
	runLeft uint64 // bytes of the run not read yet
	summed  bool   // the last block came from a run: its sum was computed here
}

// readerBuffer holds frame heads and sums records. Block data bypasses
// it: a read at least this long goes straight from the connection.
const readerBuffer = MinBlockSize

// NewReader reads frames from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, readerBuffer)}
}

// full reads len(p) bytes; a stream ending early is incomplete.
func (d *Reader) full(p []byte) error {
	if _, err := io.ReadFull(d.r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return ErrIncomplete
		}
		return err
	}
	return nil
}

func (d *Reader) u64() (uint64, error) {
	var b [8]byte
	if err := d.full(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// SumsHeader reads the head of a sums stream.
func (d *Reader) SumsHeader() (size int64, blocks uint64, err error) {
	s, err := d.u64()
	if err != nil {
		return 0, 0, err
	}
	n, err := d.u64()
	return int64(s), n, err
}

// BlocksHeader reads the head of a blocks stream.
func (d *Reader) BlocksHeader() (size int64, err error) {
	s, err := d.u64()
	return int64(s), err
}

// tag reads a frame's first byte; it returns end true at a good end frame
// and the agent's message as an error at an error frame.
func (d *Reader) tag() (kind Kind, end bool, err error) {
	t, err := d.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return 0, false, ErrIncomplete
		}
		return 0, false, err
	}
	switch t {
	case byte(KindZero), byte(KindData), tagRun:
		return Kind(t), false, nil
	case tagEnd:
		n, err := d.u64()
		if err != nil {
			return 0, false, err
		}
		if n != d.count {
			return 0, false, fmt.Errorf("the agent's stream ends after %d records but it sent %d", n, d.count)
		}
		return 0, true, nil
	case tagError:
		var b [2]byte
		if err := d.full(b[:]); err != nil {
			return 0, false, err
		}
		msg := make([]byte, binary.BigEndian.Uint16(b[:]))
		if err := d.full(msg); err != nil {
			return 0, false, err
		}
		return 0, false, fmt.Errorf("the agent failed mid-stream: %s", msg)
	}
	return 0, false, fmt.Errorf("the agent's stream is corrupt: frame tag %#x", t)
}

// Sum reads the next record of a sums stream into sum; end is true at the
// end frame.
func (d *Reader) Sum(sum *Sum) (kind Kind, end bool, err error) {
	kind, end, err = d.tag()
	if err != nil || end {
		return kind, end, err
	}
	if kind == Kind(tagRun) {
		return 0, false, errors.New("the agent's stream is corrupt: a run in a sums stream")
	}
	*sum = Sum{}
	if kind == KindData {
		if err := d.full(sum[:]); err != nil {
			return 0, false, err
		}
	}
	d.count++
	return kind, false, nil
}

// Block reads the next block of a blocks stream into b, its data into buf
// (which must hold one block: len(buf) is the block size); end is true at
// the end frame. A block from a run gets the sum of its data, computed
// here (see Summed), and an all-zero one is KindZero.
func (d *Reader) Block(b *Block, buf []byte) (end bool, err error) {
	if d.runLeft > 0 {
		return false, d.runBlock(b, buf)
	}
	kind, end, err := d.tag()
	if err != nil || end {
		return end, err
	}
	if kind == Kind(tagRun) {
		var h [16]byte
		if err := d.full(h[:]); err != nil {
			return false, err
		}
		d.runNext, d.runLeft = binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:])
		if d.runLeft == 0 {
			return false, fmt.Errorf("the agent's stream is corrupt: an empty run at block %d", d.runNext)
		}
		return false, d.runBlock(b, buf)
	}
	d.summed = false
	var h [8 + SumSize + 4]byte
	n := 8
	if kind == KindData {
		n = len(h)
	}
	if err := d.full(h[:n]); err != nil {
		return false, err
	}
	*b = Block{Index: binary.BigEndian.Uint64(h[:8]), Kind: kind}
	if kind == KindData {
		copy(b.Sum[:], h[8:8+SumSize])
		l := binary.BigEndian.Uint32(h[8+SumSize:])
		if l == 0 || int64(l) > int64(len(buf)) {
			return false, fmt.Errorf("block %d: %d bytes of data, want 1 to %d", b.Index, l, len(buf))
		}
		b.Data = buf[:l]
		if err := d.full(b.Data); err != nil {
			return false, err
		}
	}
	d.count++
	return false, nil
}

// runBlock reads the run's next block and sums it.
func (d *Reader) runBlock(b *Block, buf []byte) error {
	n := min(uint64(len(buf)), d.runLeft)
	*b = Block{Index: d.runNext, Data: buf[:n]}
	if err := d.full(b.Data); err != nil {
		return err
	}
	d.runNext++
	d.runLeft -= n
	d.summed = true
	d.count++
	if IsZero(b.Data) {
		b.Data = nil
		return nil
	}
	b.Kind, b.Sum = KindData, SumOf(b.Data)
	return nil
}

// Summed says whether the last block read came from a run, its sum
// computed from the data received rather than sent by the agent.
func (d *Reader) Summed() bool { return d.summed }
