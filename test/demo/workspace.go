package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// blockSize is the target storage's block_size: the unit compared and sent.
const blockSize = 64 << 10

// workspace is the demo's temporary directory: the two "shares" and
// what the processes keep. All of it is removed at the end.
type workspace struct {
	dir, source, target, mirrord, tokenFile string
}

func newWorkspace(parent string) (*workspace, error) {
	dir, err := os.MkdirTemp(parent, "mirror-demo-")
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	w := &workspace{
		dir:       dir,
		source:    filepath.Join(dir, "source-share"),
		target:    filepath.Join(dir, "target-share"),
		mirrord:   filepath.Join(dir, "mirrord-data"),
		tokenFile: filepath.Join(dir, "agent-token"),
	}
	for _, d := range []string{w.source, w.target} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("workspace: %w", err)
		}
	}
	return w, nil
}

// writeToken writes a fresh random token, readable by its owner only:
// the agent and the plugin refuse a token file others can read.
func (w *workspace) writeToken() error {
	var b [24]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return os.WriteFile(w.tokenFile, []byte(hex.EncodeToString(b[:])+"\n"), 0o600)
}

// extent is a byte range of the volume holding data; the rest is holes.
type extent struct{ off, len int64 }

// dataExtents lay some data out in a volume of size bytes: a boot area,
// a block in the middle, a little near the end. About 30 % is data.
func dataExtents(size int64) []extent {
	return []extent{{0, size / 8}, {size * 3 / 8, size / 8}, {size * 3 / 4, size / 16}}
}

// writeVolume creates a sparse volume file of size bytes: pseudo-random
// data in the extents (seeded: every run is the same), holes elsewhere.
func writeVolume(path string, size int64) (data int64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	rng := rand.NewChaCha8([32]byte{'m', 'i', 'r', 'r', 'o', 'r'})
	buf := make([]byte, 1<<20)
	for _, e := range dataExtents(size) {
		for off := e.off; off < e.off+e.len; off += int64(len(buf)) {
			n := min(int64(len(buf)), e.off+e.len-off)
			rng.Read(buf[:n])
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return 0, err
			}
		}
		data += e.len
	}
	return data, f.Sync()
}

// changeBlocks overwrites n whole blocks spread over the volume (some in
// data, some in holes) with new data, as a VM writing to its disk would.
func changeBlocks(path string, size int64, n int) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	blocks := size / blockSize
	buf := make([]byte, blockSize)
	rng := rand.New(rand.NewPCG(14, 7))
	for i := range n {
		idx := blocks*int64(i)/int64(n) + int64(i)*7 + 3 // spread, never the same block
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(buf, idx*blockSize); err != nil {
			return 0, err
		}
	}
	return int64(n) * blockSize, f.Sync()
}

// copyFile copies src to a new file dst (a Cinder-style snapshot file),
// keeping zero blocks as holes so that the demo's disk use stays small.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := out.Truncate(fi.Size()); err != nil {
		return err
	}
	buf := make([]byte, blockSize)
	for off := int64(0); off < fi.Size(); off += blockSize {
		n, err := in.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return err
		}
		if bytes.Count(buf[:n], []byte{0}) == n {
			continue
		}
		if _, err := out.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// checksum is the SHA-256 of a file's content, in hex.
func checksum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// allocated is how many bytes of the file are on disk (holes excluded).
func allocated(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return allocatedBytes(fi), nil
}

// visible lists the names in dir that do not start with a dot.
func visible(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Name()[0] != '.' {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
