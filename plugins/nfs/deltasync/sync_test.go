package deltasync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/deltasync/deltatest"
)

func TestSyncCopiesThenFetchesOnlyChangedBlocks(t *testing.T) {
	e := newEnv(t)
	const blocks = 64
	e.write(0, blocks*bs, 1)
	c := e.open(Options{BlockSize: bs})

	before := time.Now()
	res, err := c.Sync(t.Context(), e.source)
	if err != nil {
		t.Fatal(err)
	}
	e.requireEqual()
	if !res.FirstCopy || res.BytesReceived != blocks*bs || res.Size != blocks*bs {
		t.Fatalf("first sync: %+v", res)
	}
	st := c.Status()
	if !st.FirstCopyDone || st.Progress != 100 || st.LastSync.Before(before) || st.Size != blocks*bs {
		t.Fatalf("status after the first copy: %+v", st)
	}

	changed := []int64{0, 17, 63}
	for _, i := range changed {
		e.write(i*bs+100, 10, uint64(i)+100)
	}
	e.source.Reset()
	res, err = c.Sync(t.Context(), e.source)
	if err != nil {
		t.Fatal(err)
	}
	e.requireEqual()
	got := e.source.Counts()
	if res.FirstCopy || res.BlocksCompared != blocks || res.BlocksChanged != uint64(len(changed)) ||
		res.BytesReceived != int64(len(changed))*bs {
		t.Fatalf("delta sync: %+v", res)
	}
	if want := (deltatest.Counts{SumsCalls: 1, SumsBytes: blocks * deltatest.SumBytes, Blocks: 3, DataBytes: 3 * bs}); got != want {
		t.Fatalf("source sent %+v, want %+v", got, want)
	}
	if st := c.Status(); st.LastSyncBytes != 3*bs || !st.LastSync.Equal(res.Started) {
		t.Fatalf("status after the delta: %+v, result %+v", st, res)
	}

	e.source.Reset()
	if res, err = c.Sync(t.Context(), e.source); err != nil || res.BlocksChanged != 0 || e.source.Counts().Blocks != 0 {
		t.Fatalf("sync without a change: %+v, %v, sent %+v", res, err, e.source.Counts())
	}
	if exists(filepath.Join(c.stateDir, "journal")) {
		t.Fatal("a journal is left after the sync")
	}
}

// A transfer cut (by the source, or by the caller's context) leaves the
// copy as the last complete sync left it; the next sync converges.
func TestCutTransferKeepsTheLastCompleteSync(t *testing.T) {
	for _, how := range []string{"source fails", "context cancelled"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			e.write(0, 32*bs, 1)
			c := e.open(Options{BlockSize: bs})
			if _, err := c.Sync(t.Context(), e.source); err != nil {
				t.Fatal(err)
			}
			last := fileSum(t, e.dstPath())
			for i := range int64(10) {
				e.write(i*3*bs, bs, uint64(i)+7)
			}

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var want error
			if how == "source fails" {
				e.source.FailAfter(5)
				want = deltatest.ErrCut
			} else {
				sent := 0
				e.source.OnBlock(func(uint64) {
					if sent++; sent == 5 {
						cancel()
					}
				})
				want = context.Canceled
			}
			if _, err := c.Sync(ctx, e.source); !errors.Is(err, want) {
				t.Fatalf("Sync cut: %v, want %v", err, want)
			}
			if fileSum(t, e.dstPath()) != last {
				t.Fatal("a cut transfer changed the copy")
			}
			if exists(filepath.Join(c.stateDir, "journal")) {
				t.Fatal("a cut transfer left its journal")
			}

			e.source.FailAfter(-1)
			e.source.OnBlock(nil)
			res, err := c.Sync(t.Context(), e.source)
			if err != nil || res.BlocksChanged != 10 {
				t.Fatalf("sync after the cut: %+v, %v", res, err)
			}
			e.requireEqual()
		})
	}
}

var errCrash = errors.New("simulated crash")

// A crash after the journal's commit, before or during its apply, is
// finished by the next Open.
func TestCommittedJournalIsAppliedOnOpen(t *testing.T) {
	for _, at := range []string{"after commit", "during apply"} {
		t.Run(at, func(t *testing.T) {
			e := newEnv(t)
			e.write(0, 16*bs, 1)
			c := e.open(Options{BlockSize: bs})
			if _, err := c.Sync(t.Context(), e.source); err != nil {
				t.Fatal(err)
			}
			for _, i := range []int64{1, 5, 9, 12} {
				e.write(i*bs, bs, uint64(i)+50)
			}
			e.truncate(14*bs + 5) // and a shrink
			if at == "after commit" {
				c.hooks.afterCommit = func() error { return errCrash }
			} else {
				c.hooks.beforeApplyRecord = func(n uint64) error {
					if n == 2 {
						return errCrash
					}
					return nil
				}
			}
			if _, err := c.Sync(t.Context(), e.source); !errors.Is(err, errCrash) {
				t.Fatalf("Sync: %v, want the crash", err)
			}
			if !exists(filepath.Join(c.stateDir, "journal")) {
				t.Fatal("no journal after the crash")
			}
			c.Close()

			c = e.open(Options{BlockSize: bs})
			e.requireEqual()
			if exists(filepath.Join(c.stateDir, "journal")) {
				t.Fatal("the journal is left after Open applied it")
			}
			e.source.Reset()
			if res, err := c.Sync(t.Context(), e.source); err != nil || res.BlocksChanged != 0 {
				t.Fatalf("sync after the recovery: %+v, %v: the index does not match the copy", res, err)
			}
		})
	}
}

// A journal cut short (a crash while it was written) is dropped: the copy
// stays the last complete sync.
func TestTornJournalIsDiscarded(t *testing.T) {
	e := newEnv(t)
	e.write(0, 16*bs, 1)
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	last := fileSum(t, e.dstPath())
	e.write(3*bs, 2*bs, 9)
	c.hooks.afterCommit = func() error { return errCrash }
	if _, err := c.Sync(t.Context(), e.source); !errors.Is(err, errCrash) {
		t.Fatalf("Sync: %v", err)
	}
	c.Close()
	journal := filepath.Join(c.stateDir, "journal")
	fi, err := os.Stat(journal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(journal, fi.Size()-1); err != nil {
		t.Fatal(err)
	}

	c = e.open(Options{BlockSize: bs})
	if fileSum(t, e.dstPath()) != last {
		t.Fatal("a torn journal was applied")
	}
	if exists(journal) {
		t.Fatal("the torn journal is left")
	}
	if res, err := c.Sync(t.Context(), e.source); err != nil || res.BlocksChanged != 2 {
		t.Fatalf("sync after the torn journal: %+v, %v", res, err)
	}
	e.requireEqual()
}

// A first copy cut halfway resumes where it was: only the second half
// crosses the wire again.
func TestFirstCopyResumes(t *testing.T) {
	e := newEnv(t)
	const blocks = 128
	e.write(0, blocks*bs, 1)
	opts := Options{BlockSize: bs, CheckpointBytes: 16 * bs}
	c := e.open(opts)

	done := make(chan struct{})
	watcher := make(chan float64)
	go func() { // Status may be read during the copy
		var last float64
		for {
			select {
			case <-done:
				watcher <- last
				return
			default:
				last = c.Status().Progress
			}
		}
	}()
	e.source.OnBlock(func(i uint64) {
		// Blocks before i were handed over; at most writerDepth of them
		// are still being written.
		lo, hi := 100*float64(max(0, int(i)-writerDepth))/blocks, 100*float64(i)/blocks
		if p := c.Status().Progress; p < lo || p > hi {
			t.Errorf("progress at block %d: %v, want %v..%v", i, p, lo, hi)
		}
		if i == 63 { // checkpoints are on disk
			st, err := readState(filepath.Join(c.stateDir, "state.json"))
			if err != nil || st.FirstCopyNext < 32 || st.FirstCopyNext%16 != 0 {
				t.Errorf("state at block 63: next %d, %v; want a checkpoint from 32 on", st.FirstCopyNext, err)
			}
		}
	})
	e.source.FailAfter(blocks / 2)
	if _, err := c.Sync(t.Context(), e.source); !errors.Is(err, deltatest.ErrCut) {
		t.Fatalf("Sync: %v, want the cut", err)
	}
	close(done)
	<-watcher
	if st := c.Status(); st.FirstCopyDone || st.Progress != 50 {
		t.Fatalf("status after the cut: %+v", st)
	}
	if exists(e.dstPath()) {
		t.Fatal("an incomplete first copy is visible as the copy")
	}
	c.Close()

	e.source.FailAfter(-1)
	e.source.OnBlock(nil)
	e.source.Reset()
	c = e.open(opts)
	if p := c.Status().Progress; p != 50 {
		t.Fatalf("progress after reopening: %v", p)
	}
	res, err := c.Sync(t.Context(), e.source)
	if err != nil || !res.FirstCopy {
		t.Fatalf("resumed first copy: %+v, %v", res, err)
	}
	e.requireEqual()
	if got := e.source.Counts().DataBytes; got != blocks/2*bs {
		t.Fatalf("resumed first copy received %d bytes, want %d (half)", got, blocks/2*bs)
	}
}

// Zeros stay holes: a sparse source makes a sparse copy, and a block
// zeroed on the source becomes a hole on the copy.
func TestSparseStaysSparse(t *testing.T) {
	e := newEnv(t)
	dataBlocks := []int64{0, 100, 2000, 4095}
	for _, i := range dataBlocks {
		e.write(i*bs, bs, uint64(i))
	}
	e.truncate(256 << 20)
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	e.requireEqual()
	src, dst := allocated(t, e.srcPath()), allocated(t, e.dstPath())
	if dst > int64(len(dataBlocks))*bs+64<<10 || dst > src+64<<10 {
		t.Fatalf("the copy takes %d bytes, the source %d: not sparse", dst, src)
	}

	// Zeros written (allocated) on the source: a hole on the copy.
	f, err := os.OpenFile(e.srcPath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, bs), 100*bs); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if res, err := c.Sync(t.Context(), e.source); err != nil || res.BlocksChanged != 1 || res.BytesReceived != 0 {
		t.Fatalf("sync of a zeroed block: %+v, %v", res, err)
	}
	e.requireEqual()
	if got := allocated(t, e.dstPath()); got != dst-bs {
		t.Fatalf("the copy takes %d bytes after a block was zeroed, want %d", got, dst-bs)
	}

	point := filepath.Join(e.dst, "point")
	if _, err := c.CopyTo(point); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, point) != fileSum(t, e.dstPath()) {
		t.Fatal("the recovery point differs from the copy")
	}
	if got, want := allocated(t, point), allocated(t, e.dstPath()); got > want {
		t.Fatalf("the recovery point takes %d bytes, the copy %d: not sparse", got, want)
	}
}

func TestSizeGrowsAndShrinks(t *testing.T) {
	e := newEnv(t)
	e.write(0, 16*bs+100, 1)
	c := e.open(Options{BlockSize: bs})
	sync := func(what string) Result {
		t.Helper()
		res, err := c.Sync(t.Context(), e.source)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		e.requireEqual()
		if st := c.Status(); st.Size != res.Size {
			t.Fatalf("%s: status size %d, result %d", what, st.Size, res.Size)
		}
		return res
	}
	sync("first copy")

	e.write(16*bs+100, 20*bs, 2) // grows by data
	if res := sync("grown"); res.Size != 36*bs+100 || res.BlocksChanged != 21 {
		t.Fatalf("grown: %+v", res)
	}
	e.truncate(7*bs + 3) // shrinks inside a block
	if res := sync("shrunk"); res.Size != 7*bs+3 || res.BlocksChanged != 1 {
		t.Fatalf("shrunk: %+v", res)
	}
	e.truncate(300 * bs) // grows by zeros: nothing to fetch but the cut block
	if res := sync("grown by zeros"); res.BlocksChanged != 1 || res.BytesReceived != bs {
		t.Fatalf("grown by zeros: %+v", res)
	}
	e.truncate(0)
	sync("emptied")
}

func TestSecondOpenIsRefused(t *testing.T) {
	e := newEnv(t)
	c := e.open(Options{})
	if _, err := Open(e.dst, testName, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := Remove(e.dst, testName); !errors.Is(err, ErrLocked) {
		t.Fatalf("Remove while open: %v, want ErrLocked", err)
	}
	c.Close()
	c2, err := Open(e.dst, testName, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	c2.Close()
}

func TestDamagedIndexIsRebuilt(t *testing.T) {
	e := newEnv(t)
	e.write(0, 8*bs, 1)
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := os.WriteFile(filepath.Join(c.stateDir, "sums"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = e.open(Options{BlockSize: bs})
	e.write(2*bs, 1, 3)
	if res, err := c.Sync(t.Context(), e.source); err != nil || res.BlocksChanged != 1 {
		t.Fatalf("sync with a rebuilt index: %+v, %v", res, err)
	}
	e.requireEqual()
}

func TestRemoveAndKeepStandalone(t *testing.T) {
	e := newEnv(t)
	e.write(0, 4*bs, 1)
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	e.write(0, 1, 2)
	c.hooks.afterCommit = func() error { return errCrash }
	if _, err := c.Sync(t.Context(), e.source); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	c.Close()

	kept, err := KeepStandalone(e.dst, testName)
	if err != nil || !kept {
		t.Fatalf("KeepStandalone: %v, %v", kept, err)
	}
	e.requireEqual() // the pending journal was applied
	if exists(filepath.Join(e.dst, StateDirName)) {
		t.Fatal("KeepStandalone left the sync state")
	}
	if kept, err := KeepStandalone(e.dst, testName); err != nil || !kept {
		t.Fatalf("KeepStandalone again: %v, %v", kept, err)
	}
	e.requireEqual()

	c = e.open(Options{BlockSize: bs}) // a new mirror over the kept file
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := Remove(e.dst, testName); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(e.dst); len(entries) != 0 {
		t.Fatalf("Remove left %v", entries)
	}
	if err := Remove(e.dst, testName); err != nil {
		t.Fatalf("Remove of nothing: %v", err)
	}
}

func TestKeepStandaloneBeforeAFirstCopyKeepsNothing(t *testing.T) {
	e := newEnv(t)
	e.write(0, 8*bs, 1)
	c := e.open(Options{BlockSize: bs})
	e.source.FailAfter(3)
	if _, err := c.Sync(t.Context(), e.source); err == nil {
		t.Fatal("Sync did not fail")
	}
	if kept, err := c.KeepStandalone(); err != nil || kept {
		t.Fatalf("KeepStandalone: %v, %v", kept, err)
	}
	if entries, _ := os.ReadDir(e.dst); len(entries) != 0 {
		t.Fatalf("KeepStandalone left %v", entries)
	}
}

func TestCopyToNeedsACopy(t *testing.T) {
	e := newEnv(t)
	c := e.open(Options{})
	if _, err := c.CopyTo(filepath.Join(e.dst, "point")); !errors.Is(err, ErrNoCopy) {
		t.Fatalf("CopyTo before a first copy: %v", err)
	}
}

func TestOpenNeedsTheTargetDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "unmounted")
	if _, err := Open(dir, testName, Options{}); err == nil {
		t.Fatal("Open created the target directory")
	}
	if exists(dir) {
		t.Fatal("Open created the target directory")
	}
	if _, err := Open(t.TempDir(), "../x", Options{}); err == nil {
		t.Fatal("Open accepted a path as a name")
	}
}

// A recovery point taken after a sync stopped during its apply is of the
// complete copy: the committed journal is applied first.
func TestCopyToFinishesAPendingJournal(t *testing.T) {
	e := newEnv(t)
	e.write(0, 16*bs, 1)
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int64{2, 4, 6} {
		e.write(i*bs, 100, uint64(i))
	}
	c.hooks.beforeApplyRecord = func(n uint64) error {
		if n == 1 {
			return errCrash
		}
		return nil
	}
	if _, err := c.Sync(t.Context(), e.source); !errors.Is(err, errCrash) {
		t.Fatalf("Sync: %v", err)
	}
	c.hooks.beforeApplyRecord = nil
	point := filepath.Join(e.dst, "point")
	if _, err := c.CopyTo(point); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, point) != fileSum(t, e.srcPath()) {
		t.Fatal("the recovery point is not the complete sync")
	}
	if exists(filepath.Join(e.dst, ".point.partial")) {
		t.Fatal("CopyTo left its temporary file")
	}
}
