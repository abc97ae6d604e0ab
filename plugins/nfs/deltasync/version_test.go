package deltasync

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// encodeIndexV1 writes an index as version 1 did: SHA-256 block sums in
// records of 33 bytes, magic "MIRSUMS1".
func encodeIndexV1(t *testing.T, target string, blockSize int) []byte {
	t.Helper()
	data, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	n := agentproto.Blocks(int64(len(data)), blockSize)
	var b bytes.Buffer
	b.WriteString("MIRSUMS1")
	binary.Write(&b, binary.LittleEndian, uint32(blockSize))
	binary.Write(&b, binary.LittleEndian, int64(len(data)))
	binary.Write(&b, binary.LittleEndian, n)
	for i := range n {
		blk := data[i*uint64(blockSize) : min(uint64(len(data)), (i+1)*uint64(blockSize))]
		kind := agentproto.KindData
		if agentproto.IsZero(blk) {
			kind = agentproto.KindZero
		}
		b.WriteByte(byte(kind))
		sum := sha256.Sum256(blk)
		if kind == agentproto.KindZero {
			sum = [32]byte{}
		}
		b.Write(sum[:])
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// TestOldVersionIndexIsRebuilt: a copy made by a plugin of the SHA-256
// protocol has an index of version 1; it is rebuilt from the copy, not
// misread, and the next sync still sends only the changed block.
func TestOldVersionIndexIsRebuilt(t *testing.T) {
	e := newEnv(t)
	e.write(0, 8*bs, 1)
	zeroBlock(t, e.srcPath(), 3) // to check kinds survive the rebuild
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	c.Close()
	old := encodeIndexV1(t, filepath.Join(e.dst, testName), bs)
	if _, err := decodeIndex(old); !errors.Is(err, errBadIndex) || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("decoding a version 1 index: %v, want errBadIndex naming version 1", err)
	}
	sums := filepath.Join(c.stateDir, "sums")
	if err := os.WriteFile(sums, old, 0o600); err != nil {
		t.Fatal(err)
	}

	c = e.open(Options{BlockSize: bs})
	defer c.Close()
	rebuilt, err := readIndex(sums)
	if err != nil {
		t.Fatalf("the index after Open: %v, want rebuilt in version 2", err)
	}
	if rebuilt.Kinds[3] != agentproto.KindZero || rebuilt.Kinds[2] != agentproto.KindData {
		t.Fatalf("rebuilt kinds %v, want block 3 a hole", rebuilt.Kinds)
	}
	e.write(2*bs+7, 1, 3)
	e.source.Reset()
	res, err := c.Sync(t.Context(), e.source)
	if err != nil || res.BlocksChanged != 1 || e.source.Counts().DataBytes != bs {
		t.Fatalf("sync after the rebuild: %+v, %v, sent %+v; want only block 2", res, err, e.source.Counts())
	}
	e.requireEqual()
}

func zeroBlock(t *testing.T, path string, i int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, bs), i*bs); err != nil {
		t.Fatal(err)
	}
}

// TestOldVersionJournalIsApplied: a committed journal of version 1 (a
// crash before the upgrade) is still applied at Open, so the copy is a
// complete sync; its blocks are fetched again by the next sync, as their
// sums were SHA-256.
func TestOldVersionJournalIsApplied(t *testing.T) {
	e := newEnv(t)
	e.write(0, 8*bs, 1)
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.write(2*bs, bs, 5)
	src, err := os.ReadFile(e.srcPath())
	if err != nil {
		t.Fatal(err)
	}
	blk := src[2*bs : 3*bs]
	var j bytes.Buffer
	j.WriteString("MIRJRNL1")
	binary.Write(&j, binary.LittleEndian, uint32(bs))
	binary.Write(&j, binary.LittleEndian, int64(len(src)))
	binary.Write(&j, binary.LittleEndian, int64(1))
	j.WriteByte('B')
	binary.Write(&j, binary.LittleEndian, uint64(2))
	j.WriteByte(byte(agentproto.KindData))
	sum := sha256.Sum256(blk)
	j.Write(sum[:])
	binary.Write(&j, binary.LittleEndian, uint32(len(blk)))
	j.Write(blk)
	j.WriteByte('C')
	binary.Write(&j, binary.LittleEndian, uint64(1))
	binary.Write(&j, binary.LittleEndian, int64(len(blk)))
	sum = sha256.Sum256(j.Bytes())
	j.Write(sum[:])
	if err := os.WriteFile(filepath.Join(c.stateDir, "journal"), j.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.stateDir, "sums"), encodeIndexV1(t, filepath.Join(e.dst, testName), bs), 0o600); err != nil {
		t.Fatal(err)
	}

	c = e.open(Options{BlockSize: bs})
	defer c.Close()
	e.requireEqual() // applied at Open
	if exists(filepath.Join(c.stateDir, "journal")) {
		t.Fatal("the journal was left after Open")
	}
	e.source.Reset()
	res, err := c.Sync(t.Context(), e.source)
	if err != nil || res.BlocksChanged != 1 || e.source.Counts().DataBytes != bs {
		t.Fatalf("sync after the old journal: %+v, %v, sent %+v; want block 2 again", res, err, e.source.Counts())
	}
	e.requireEqual()
}
