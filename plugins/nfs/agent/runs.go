package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// runBytes bounds one run frame: long enough that a frame head and a
// sendfile call per run cost nothing, short enough that a cancelled
// request stops soon.
const runBytes = 8 << 20

// item is one frame of a runs response: a hole block, or a run of data
// blocks sent from the file as they are.
type item struct {
	index, blocks uint64
	data          bool
}

// serveRuns answers a range request with sums=0 (the first copy): holes as
// zero frames, data as run frames sent straight from the file, unsummed
// (the caller sums what it receives). The whole body's length is known
// before it is sent, so it goes out with a Content-Length and the data
// with sendfile on a plain connection: the agent neither reads nor copies
// it. A file that shrinks while it is sent leaves the body short, which
// the caller reads as an incomplete stream.
func (s *Server) serveRuns(w http.ResponseWriter, r *http.Request, f *os.File, name string, size int64, bs int, from, to uint64) {
	items, length, err := s.planRuns(f, size, bs, from, to)
	if err != nil {
		s.fail(w, r, name, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(http.StatusOK)
	buf := agentproto.AppendBlocksHeader(nil, size)
	var count uint64
	err = func() error {
		for _, it := range items {
			if err := r.Context().Err(); err != nil {
				return err
			}
			if !it.data {
				buf = agentproto.AppendBlockHead(buf, it.index, agentproto.KindZero, nil, 0)
				count++
				s.served.Add(1)
				continue
			}
			off := int64(it.index) * int64(bs)
			n := min(int64(it.blocks)*int64(bs), size-off)
			buf = agentproto.AppendRunHead(buf, it.index, n)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
			sent, err := sendFile(w, f, off, n)
			s.bytesRead.Add(sent)
			s.bytesServed.Add(sent)
			if err == nil && sent < n {
				err = &shrankError{name: name, sent: sent, n: n, at: off}
			}
			if err != nil {
				return err
			}
			count += it.blocks
			s.served.Add(int64(it.blocks))
		}
		buf = agentproto.AppendEnd(buf, count)
		_, err := w.Write(buf)
		return err
	}()
	switch {
	case err == nil:
	case errors.As(err, new(*shrankError)):
		// The body is short of its length: the server closes the
		// connection and the caller sees an incomplete stream.
		s.log.Error("stream failed", "remote", r.RemoteAddr, "path", r.URL.Path, "name", name, "sent", count, "err", err)
	default:
		s.log.Info("client went away", "remote", r.RemoteAddr, "path", r.URL.Path, "name", name, "sent", count, "err", err)
	}
}

// shrankError: the file ended before a run did.
type shrankError struct {
	name        string
	sent, n, at int64
}

func (e *shrankError) Error() string {
	return fmt.Sprintf("%s shrank while it was sent: %d of %d bytes at %d", e.name, e.sent, e.n, e.at)
}

// planRuns lists the frames of blocks [from, to) of a file of size, and
// the length of the body that sends them. A block is a zero frame when it
// lies in a hole or holds only zeros: as in every other response, zeros
// never cross the wire. Telling data from zeros reads a block only up to
// its first non-zero byte, probed a page at a time: about 1/16 of a
// 64 KiB block of data.
func (s *Server) planRuns(f *os.File, size int64, bs int, from, to uint64) ([]item, int64, error) {
	perRun := uint64(max(1, runBytes/bs))
	length := int64(agentproto.BlocksHeaderSize + agentproto.EndFrameSize)
	var items []item
	ext := extent{}
	buf := make([]byte, bs)
	for i := from; i < to; i++ {
		off := int64(i) * int64(bs)
		n := min(int64(bs), size-off)
		zero := ext.hole(f, off, n)
		if !zero {
			var err error
			if zero, err = s.zeroBlock(f, buf[:n], off); err != nil {
				return nil, 0, fmt.Errorf("read block %d: %w", i, err)
			}
		}
		if zero {
			items = append(items, item{index: i, blocks: 1})
			length += agentproto.ZeroFrameSize
			continue
		}
		if k := len(items) - 1; k >= 0 && items[k].data && items[k].blocks < perRun {
			items[k].blocks++
		} else {
			items = append(items, item{index: i, blocks: 1, data: true})
			length += agentproto.RunHeadSize
		}
		length += n
	}
	return items, length, nil
}

// probeBytes is the first read of a block that is not a hole: data is
// almost always found in it.
const probeBytes = 4 << 10

// zeroBlock says whether the block at off, len(buf) long, holds only
// zeros, reading into buf only until a non-zero byte is found. A block
// cut short by the file's end reads as what is there.
func (s *Server) zeroBlock(f *os.File, buf []byte, off int64) (bool, error) {
	for done := 0; done < len(buf); {
		n := min(len(buf)-done, max(probeBytes, done)) // 4 KiB, 4 KiB, 8 KiB, ...
		got, err := f.ReadAt(buf[done:done+n], off+int64(done))
		s.bytesRead.Add(int64(got))
		if !agentproto.IsZero(buf[done : done+got]) {
			return false, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return true, nil // shrunk since: nothing more is there
			}
			return false, err
		}
		done += n
	}
	return true, nil
}

// sendFile writes n bytes of f from off to w: by sendfile when w is a
// plain connection's response, else by reading them.
func sendFile(w io.Writer, f *os.File, off, n int64) (int64, error) {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek to %d: %w", off, err)
	}
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(&io.LimitedReader{R: f, N: n})
	}
	return io.CopyN(w, f, n)
}
