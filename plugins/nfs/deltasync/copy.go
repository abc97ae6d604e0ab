package deltasync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
)

// Errors of this package, wrapped with context.
var (
	// ErrLocked: another Copy (in this or another process, on this or
	// another host) holds the volume's lock.
	ErrLocked = errors.New("the volume's copy is in use by another process")
	// ErrNoCopy: no first copy has completed, so there is no copy to read.
	ErrNoCopy = errors.New("no complete copy yet")
	// ErrClosed: the Copy was closed.
	ErrClosed = errors.New("copy closed")
)

// StateDirName is the directory, inside the target directory, holding the
// sync state of each volume.
const StateDirName = ".mirror"

// DefaultCheckpointBytes is how much of a first copy is written between
// two persisted progress points.
const DefaultCheckpointBytes = 64 << 20

// Options tune a Copy.
type Options struct {
	// BlockSize of a new copy (default agentproto.DefaultBlockSize). A
	// copy keeps the block size it was started with: its index is in it.
	BlockSize int
	// SourceName is the file's name at the source (default: the copy's).
	SourceName string
	// CheckpointBytes (default DefaultCheckpointBytes).
	CheckpointBytes int64
}

// Copy is one volume's copy in a target directory, locked for this
// process until Close. Sync and CopyTo run one at a time; Status may be
// called at any time from any goroutine.
type Copy struct {
	dir, name, srcName string
	stateDir           string
	checkpoint         int64

	lock *os.File

	// run serialises Sync, CopyTo, Remove, KeepStandalone and Close; it
	// guards idx and closed. Writers of st hold mu as well.
	run    sync.Mutex
	idx    agentproto.Sums // of the copy, or of first-copy's done blocks
	closed bool

	mu      sync.Mutex // guards st and syncing, for Status
	st      state
	syncing bool
	next    atomic.Uint64 // first copy's next block, live

	hooks hooks
}

// hooks let tests stop a sync where a crash would.
type hooks struct {
	// afterCommit runs once a delta's journal is committed, before it is
	// applied; an error returned stops the sync there.
	afterCommit func() error
	// beforeApplyRecord runs before the n-th record (from 0) of a journal
	// is applied; an error returned stops the apply there.
	beforeApplyRecord func(n uint64) error
}

// Status is what a Copy reports.
type Status struct {
	FirstCopyDone bool
	// Progress of the first copy in percent; 100 once done.
	Progress  float64
	Size      int64
	BlockSize int
	// LastSync is when the source read of the last complete sync began;
	// zero before the first.
	LastSync      time.Time
	LastSyncBytes int64
	Syncing       bool
	Paused        bool
}

// ValidName reports whether name can name a copy: one path element, not
// hidden.
func ValidName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("volume file name %q: want a single path element not starting with a dot", name)
	}
	return nil
}

func stateDirOf(dir, name string) string { return filepath.Join(dir, StateDirName, name) }

func (c *Copy) path(file string) string { return filepath.Join(c.stateDir, file) }
func (c *Copy) target() string          { return filepath.Join(c.dir, c.name) }

// Open opens the copy of volume file name in directory dir, creating its
// state the first time, and takes its lock. It finishes what a previous
// process left: a committed journal is applied, an uncommitted one
// dropped, a first copy that was complete but not yet renamed is renamed.
func Open(dir, name string, opts Options) (*Copy, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if opts.BlockSize == 0 {
		opts.BlockSize = agentproto.DefaultBlockSize
	}
	if err := agentproto.CheckBlockSize(opts.BlockSize); err != nil {
		return nil, err
	}
	if opts.SourceName == "" {
		opts.SourceName = name
	}
	if opts.CheckpointBytes <= 0 {
		opts.CheckpointBytes = DefaultCheckpointBytes
	}
	c := &Copy{dir: dir, name: name, srcName: opts.SourceName, stateDir: stateDirOf(dir, name), checkpoint: opts.CheckpointBytes}
	// The target directory must exist: creating it could write a volume
	// below an unmounted share's mount point.
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("target directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("target directory %s: not a directory", dir)
	}
	if err := mkdirDurable(c.stateDir); err != nil {
		return nil, err
	}
	lock, err := lockDir(c.stateDir)
	if err != nil {
		return nil, err
	}
	c.lock = lock
	if err := c.load(opts.BlockSize); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open the copy of %s: %w", name, err)
	}
	return c, nil
}

// lockDir takes the flock of a state directory without waiting.
func lockDir(stateDir string) (*os.File, error) {
	path := filepath.Join(stateDir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// A Remove may have deleted the file between our open and our lock:
	// then the lock is on a file nobody else will look at.
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if now, err := os.Stat(path); err != nil || !os.SameFile(fi, now) {
		f.Close()
		return nil, fmt.Errorf("lock %s: removed while locking: %w", path, ErrLocked)
	}
	return f, nil
}

// load reads state and index and finishes what a previous process left.
func (c *Copy) load(blockSize int) error {
	st, err := readState(c.path("state.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		st = state{Version: stateVersion, BlockSize: blockSize}
	case err != nil:
		return err
	}
	c.st = st
	c.next.Store(st.FirstCopyNext)

	idx, err := readIndex(c.path("sums"))
	if err == nil && (idx.BlockSize != st.BlockSize || ((st.FirstCopyStarted || st.FirstCopyDone) && idx.Size != st.Size)) {
		err = fmt.Errorf("%w: index of %d bytes in blocks of %d, state says %d in %d", errBadIndex, idx.Size, idx.BlockSize, st.Size, st.BlockSize)
	}
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errBadIndex) {
			return err
		}
		if idx, err = c.lostIndex(); err != nil {
			return err
		}
	}
	c.idx = idx

	if err := c.recoverJournal(); err != nil {
		return err
	}
	return c.recoverFirstCopy()
}

// lostIndex is the index to use when none could be read: rebuilt from the
// copy once there is one, else a first copy starts over.
func (c *Copy) lostIndex() (agentproto.Sums, error) {
	if c.st.FirstCopyDone {
		idx, err := indexOfFile(c.target(), c.st.BlockSize)
		if err != nil {
			return agentproto.Sums{}, err
		}
		if err := writeFileAtomic(c.path("sums"), encodeIndex(idx)); err != nil {
			return agentproto.Sums{}, err
		}
		return idx, nil
	}
	if c.st.FirstCopyStarted {
		c.setState(func(s *state) { s.FirstCopyStarted, s.FirstCopyNext = false, 0 })
		c.next.Store(0)
	}
	return newIndex(0, c.st.BlockSize), nil
}

// recoverJournal applies a committed journal and drops any other.
func (c *Copy) recoverJournal() error {
	path := c.path("journal")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if !c.st.FirstCopyDone {
		return removeDurable(path) // no copy to apply it to: cannot be ours
	}
	err := c.applyJournal()
	if errors.Is(err, errTorn) {
		return removeDurable(path)
	}
	return err
}

// recoverFirstCopy finishes a first copy whose last block was written:
// renamed, or only not yet marked done.
func (c *Copy) recoverFirstCopy() error {
	st := c.st
	if st.FirstCopyDone || !st.FirstCopyStarted || st.FirstCopyNext < agentproto.Blocks(st.Size, st.BlockSize) {
		return nil
	}
	if _, err := os.Stat(c.path("first-copy")); err == nil {
		return c.publishFirstCopy()
	}
	if _, err := os.Stat(c.target()); err != nil {
		// Neither file: start over.
		c.setState(func(s *state) { s.FirstCopyStarted, s.FirstCopyNext = false, 0 })
		c.next.Store(0)
		return nil
	}
	return c.saveState(func(s *state) { s.FirstCopyDone = true })
}

// setState changes st under mu, for Status.
func (c *Copy) setState(f func(*state)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
}

// saveState changes st and writes it to state.json.
func (c *Copy) saveState(f func(*state)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.st)
	return writeState(c.path("state.json"), c.st)
}

// Status reports the copy's state; safe to call during a Sync.
func (c *Copy) Status() Status {
	c.mu.Lock()
	st, syncing := c.st, c.syncing
	c.mu.Unlock()
	s := Status{
		FirstCopyDone: st.FirstCopyDone, Size: st.Size, BlockSize: st.BlockSize,
		LastSync: st.LastSync, LastSyncBytes: st.LastSyncBytes, Syncing: syncing, Paused: st.Paused,
	}
	switch n := agentproto.Blocks(st.Size, st.BlockSize); {
	case st.FirstCopyDone:
		s.Progress = 100
	case st.FirstCopyStarted && n > 0:
		s.Progress = 100 * float64(min(c.next.Load(), n)) / float64(n)
	}
	return s
}

// SetPaused records in the state whether the volume's sync is paused, for
// whichever host's plugin opens it next.
func (c *Copy) SetPaused(paused bool) error {
	return c.saveState(func(s *state) { s.Paused = paused })
}

// Close releases the lock. A Sync running is not stopped: cancel its
// context first.
func (c *Copy) Close() error {
	c.run.Lock()
	defer c.run.Unlock()
	return c.closeLocked()
}

func (c *Copy) closeLocked() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if err := c.lock.Close(); err != nil {
		return fmt.Errorf("unlock the copy of %s: %w", c.name, err)
	}
	return nil
}
