package deltasync

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// The journal holds one delta before it touches the copy:
//
//	header  "MIRJRNL2" | block size u32 | new size i64 | sync start (unix ns) i64
//	record  'B' | index u64 | kind u8 | sum [16] | length u32 | data
//	commit  'C' | records u64 | bytes received i64 | SHA-256 of all bytes before it
//
// (little endian; sum is agentproto.Sum, XXH3-128). Only a journal ending
// in a valid commit record is applied; anything else is a delta that was
// cut and is discarded. A committed journal of version 1 (sum [32],
// SHA-256), left by a crash before an upgrade, is still applied so the
// copy is a complete sync; its records' sums read as zero, which no
// agent's sum equals, so the next delta sync fetches those blocks again
// and the index gets their sums.
var journalMagic = [8]byte{'M', 'I', 'R', 'J', 'R', 'N', 'L', '2'}

// journalV1SumSize is the sum's length in a version 1 journal.
const journalV1SumSize = 32

// journalRecordLen is a block record's head after its tag.
const journalRecordLen = 8 + 1 + agentproto.SumSize + 4

const (
	tagBlock  = 'B'
	tagCommit = 'C'
)

// errTorn: the journal has no valid commit record.
var errTorn = errors.New("journal not committed")

type journalHeader struct {
	BlockSize int
	Size      int64
	Started   time.Time
}

type journalCommit struct {
	Records uint64
	Bytes   int64
}

type journalRecord struct {
	Index uint64
	Kind  agentproto.Kind
	Sum   agentproto.Sum
	Data  []byte // valid during the callback only
}

type journalWriter struct {
	f       *os.File
	w       *bufio.Writer
	h       hash.Hash
	out     io.Writer // w and h
	records uint64
}

func createJournal(path string, hd journalHeader) (*journalWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	j := &journalWriter{f: f, w: bufio.NewWriterSize(f, 1<<20), h: sha256.New()}
	j.out = io.MultiWriter(j.w, j.h)
	var b [28]byte
	copy(b[:], journalMagic[:])
	binary.LittleEndian.PutUint32(b[8:], uint32(hd.BlockSize))
	binary.LittleEndian.PutUint64(b[12:], uint64(hd.Size))
	binary.LittleEndian.PutUint64(b[20:], uint64(hd.Started.UnixNano()))
	if _, err := j.out.Write(b[:]); err != nil {
		j.abort()
		return nil, fmt.Errorf("write journal: %w", err)
	}
	return j, nil
}

func (j *journalWriter) add(r journalRecord) error {
	var b [1 + journalRecordLen]byte
	b[0] = tagBlock
	binary.LittleEndian.PutUint64(b[1:], r.Index)
	b[9] = byte(r.Kind)
	copy(b[10:], r.Sum[:])
	binary.LittleEndian.PutUint32(b[10+agentproto.SumSize:], uint32(len(r.Data)))
	if _, err := j.out.Write(b[:]); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if _, err := j.out.Write(r.Data); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	j.records++
	return nil
}

// commit writes the commit record and makes the journal durable: from
// here on the delta will be applied, by this process or the next Open.
func (j *journalWriter) commit(bytesReceived int64) error {
	var b [1 + 8 + 8]byte
	b[0] = tagCommit
	binary.LittleEndian.PutUint64(b[1:], j.records)
	binary.LittleEndian.PutUint64(b[9:], uint64(bytesReceived))
	if _, err := j.out.Write(b[:]); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if _, err := j.w.Write(j.h.Sum(nil)); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("fsync journal: %w", err)
	}
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("close journal: %w", err)
	}
	return syncDir(filepath.Dir(j.f.Name()))
}

// abort drops an uncommitted journal.
func (j *journalWriter) abort() {
	j.f.Close()
	os.Remove(j.f.Name())
}

// readJournal checks that the journal at path is committed and, with fn
// not nil, then reads it again calling fn for each record in order. It
// returns errTorn for a journal that is not committed.
func readJournal(path string, fn func(journalRecord) error) (journalHeader, journalCommit, error) {
	f, err := os.Open(path)
	if err != nil {
		return journalHeader{}, journalCommit{}, fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	hd, c, err := scanJournal(f, nil)
	if err != nil || fn == nil {
		return hd, c, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return hd, c, fmt.Errorf("read journal: %w", err)
	}
	if _, _, err := scanJournal(f, fn); err != nil {
		return hd, c, err
	}
	return hd, c, nil
}

// scanJournal reads a journal from r, checking it as it goes; fn, if not
// nil, gets each record (a first pass has verified the commit, so records
// only reach fn from a committed journal).
func scanJournal(r io.Reader, fn func(journalRecord) error) (journalHeader, journalCommit, error) {
	h := sha256.New()
	br := bufio.NewReaderSize(r, 1<<20)
	in := io.TeeReader(br, h)
	torn := func(why string) (journalHeader, journalCommit, error) {
		return journalHeader{}, journalCommit{}, fmt.Errorf("%w: %s", errTorn, why)
	}
	var hb [28]byte
	if _, err := io.ReadFull(in, hb[:]); err != nil {
		return torn("short header")
	}
	if !bytes.Equal(hb[:7], journalMagic[:7]) {
		return torn("not a journal")
	}
	sumLen := agentproto.SumSize
	switch hb[7] {
	case journalMagic[7]:
	case '1':
		sumLen = journalV1SumSize
	default:
		return torn(fmt.Sprintf("journal version %c, want %c", hb[7], journalMagic[7]))
	}
	hd := journalHeader{
		BlockSize: int(binary.LittleEndian.Uint32(hb[8:])),
		Size:      int64(binary.LittleEndian.Uint64(hb[12:])),
		Started:   time.Unix(0, int64(binary.LittleEndian.Uint64(hb[20:]))),
	}
	if agentproto.CheckBlockSize(hd.BlockSize) != nil || hd.Size < 0 {
		return torn("bad header")
	}
	nblocks := agentproto.Blocks(hd.Size, hd.BlockSize)
	data := make([]byte, hd.BlockSize)
	var records uint64
	for {
		var tag [1]byte
		if _, err := io.ReadFull(in, tag[:]); err != nil {
			return torn("no commit record")
		}
		switch tag[0] {
		case tagBlock:
			var b [8 + 1 + journalV1SumSize + 4]byte
			head := b[:8+1+sumLen+4]
			if _, err := io.ReadFull(in, head); err != nil {
				return torn("short record")
			}
			rec := journalRecord{Index: binary.LittleEndian.Uint64(head[0:]), Kind: agentproto.Kind(head[8])}
			if sumLen == agentproto.SumSize {
				copy(rec.Sum[:], head[9:])
			} // else version 1: left zero
			n := binary.LittleEndian.Uint32(head[9+sumLen:])
			if rec.Index >= nblocks || int64(n) > int64(hd.BlockSize) || rec.Kind > agentproto.KindData ||
				(rec.Kind == agentproto.KindZero && n != 0) {
				return torn("bad record")
			}
			rec.Data = data[:n]
			if _, err := io.ReadFull(in, rec.Data); err != nil {
				return torn("short record")
			}
			if fn != nil {
				if err := fn(rec); err != nil {
					return hd, journalCommit{}, err
				}
			}
			records++
		case tagCommit:
			var b [16]byte
			if _, err := io.ReadFull(in, b[:]); err != nil {
				return torn("short commit record")
			}
			want := h.Sum(nil)
			var got [sha256.Size]byte
			if _, err := io.ReadFull(br, got[:]); err != nil || !bytes.Equal(got[:], want) {
				return torn("checksum mismatch")
			}
			c := journalCommit{Records: binary.LittleEndian.Uint64(b[0:]), Bytes: int64(binary.LittleEndian.Uint64(b[8:]))}
			if c.Records != records {
				return torn("record count mismatch")
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				return torn("data after the commit record")
			}
			return hd, c, nil
		default:
			return torn("bad record tag")
		}
	}
}
