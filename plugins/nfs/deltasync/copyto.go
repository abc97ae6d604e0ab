package deltasync

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CopyTo writes a point-in-time copy of the copy to dst (a recovery
// point): a reflink where the filesystem can, else a copy of its data
// regions only, so holes stay holes. dst appears complete and fsynced, or
// not at all. It reports whether it made a reflink.
func (c *Copy) CopyTo(dst string) (reflinked bool, err error) {
	c.run.Lock()
	defer c.run.Unlock()
	if c.closed {
		return false, ErrClosed
	}
	if !c.st.FirstCopyDone {
		return false, fmt.Errorf("copy %s to %s: %w", c.name, dst, ErrNoCopy)
	}
	// A Sync that stopped during its apply left a committed journal: the
	// copy is only complete with it applied.
	if err := c.recoverJournal(); err != nil {
		return false, err
	}
	in, err := os.Open(c.target())
	if err != nil {
		return false, fmt.Errorf("copy %s: %w", c.name, err)
	}
	defer in.Close()
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".partial")
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Errorf("copy %s: %w", c.name, err)
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		reflinked = true
	} else if err := copySparse(out, in); err != nil {
		return false, fmt.Errorf("copy %s to %s: %w", c.name, dst, err)
	}
	if err := out.Sync(); err != nil {
		return false, fmt.Errorf("copy %s: fsync %s: %w", c.name, tmp, err)
	}
	if err := out.Close(); err != nil {
		return false, fmt.Errorf("copy %s: %w", c.name, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return false, fmt.Errorf("copy %s: %w", c.name, err)
	}
	return reflinked, syncDir(filepath.Dir(dst))
}

// copySparse copies in's data regions to out at the same offsets and gives
// out in's size, leaving in's holes as holes in out.
func copySparse(out, in *os.File) error {
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if err := out.Truncate(size); err != nil {
		return err
	}
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole up to the end
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		if err := copyRange(out, in, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyRange copies n bytes at off from in to out, in the kernel where it
// can (copy_file_range: no trip through user space, a server-side copy on
// NFS 4.2).
func copyRange(out, in *os.File, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		k, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				return copyRangeRW(out, in, roff, n)
			}
			return fmt.Errorf("copy_file_range: %w", err)
		}
		if k == 0 {
			return fmt.Errorf("copy_file_range: %w", io.ErrUnexpectedEOF)
		}
		n -= int64(k)
	}
	return nil
}

func copyRangeRW(out, in *os.File, off, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		k, err := in.ReadAt(buf[:min(n, int64(len(buf)))], off)
		if k > 0 {
			if _, werr := out.WriteAt(buf[:k], off); werr != nil {
				return werr
			}
		}
		if err != nil && (k == 0 || !errors.Is(err, io.EOF)) {
			return err
		}
		off += int64(k)
		n -= int64(k)
	}
	return nil
}
