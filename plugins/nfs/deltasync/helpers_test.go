package deltasync

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/deltasync/deltatest"
)

const (
	testName = "volume-0b0f4c0e"
	bs       = 64 << 10
)

// env is a source directory served by a deltatest.Source and a target
// directory.
type env struct {
	t        *testing.T
	src, dst string
	source   *deltatest.Source
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, src: t.TempDir(), dst: t.TempDir()}
	e.source = deltatest.New(e.src)
	return e
}

func (e *env) srcPath() string { return filepath.Join(e.src, testName) }
func (e *env) dstPath() string { return filepath.Join(e.dst, testName) }

func (e *env) open(opts Options) *Copy {
	e.t.Helper()
	c, err := Open(e.dst, testName, opts)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// write writes pseudo-random data at off of the source file.
func (e *env) write(off int64, n int, seed uint64) {
	e.t.Helper()
	writeRandom(e.t, e.srcPath(), off, n, seed)
}

func writeRandom(t testing.TB, path string, off int64, n int, seed uint64) {
	t.Helper()
	buf := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}).Read(buf)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

func (e *env) truncate(size int64) {
	e.t.Helper()
	if err := os.Truncate(e.srcPath(), size); err != nil {
		e.t.Fatal(err)
	}
}

// fileSum is a sum of path's size and content that reads only its data
// regions: files of equal content have equal sums whatever their holes.
func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	h := sha256.New()
	binary.Write(h, binary.LittleEndian, size)
	buf := make([]byte, bs)
	last := int64(-1) // the last chunk hashed; chunks are bs-aligned
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		for c := data / bs * bs; c < hole; c += bs {
			if c <= last {
				continue
			}
			last = c
			n, err := f.ReadAt(buf[:min(bs, size-c)], c)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if !agentproto.IsZero(buf[:n]) {
				binary.Write(h, binary.LittleEndian, c)
				h.Write(buf[:n])
			}
		}
		off = hole
	}
	return [32]byte(h.Sum(nil))
}

// requireEqual fails unless the copy has the source's exact content.
func (e *env) requireEqual() {
	e.t.Helper()
	if a, b := fileSum(e.t, e.srcPath()), fileSum(e.t, e.dstPath()); a != b {
		e.t.Fatalf("the copy differs from the source")
	}
}

// allocated is how many bytes path takes on disk.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
