package deltasync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Remove deletes the copy of volume file name in dir and its sync state.
// It takes the volume's lock first, so it fails with ErrLocked while
// another process syncs it. A volume with neither is fine.
func Remove(dir, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	stateDir := stateDirOf(dir, name)
	lock, err := lockDir(stateDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		lock = nil // no state: nothing to lock
	case err != nil:
		return err
	}
	if lock != nil {
		defer lock.Close()
	}
	return removeAll(dir, name, true)
}

// Remove deletes the copy and its state, and closes c.
func (c *Copy) Remove() error {
	c.run.Lock()
	defer c.run.Unlock()
	if c.closed {
		return ErrClosed
	}
	err := removeAll(c.dir, c.name, true)
	return errors.Join(err, c.closeLocked())
}

// KeepStandalone ends the sync of volume file name in dir and leaves its
// copy as a plain file: a pending journal is applied, the state (and an
// unfinished first copy) removed. kept says whether there is a file: not
// when no first copy had completed. Calling it again is harmless.
func KeepStandalone(dir, name string) (kept bool, err error) {
	c, err := Open(dir, name, Options{})
	if err != nil {
		return false, err
	}
	return c.KeepStandalone()
}

// KeepStandalone is the function KeepStandalone on an open Copy, which it
// closes.
func (c *Copy) KeepStandalone() (kept bool, err error) {
	c.run.Lock()
	defer c.run.Unlock()
	if c.closed {
		return false, ErrClosed
	}
	if c.st.FirstCopyDone {
		if err := c.recoverJournal(); err != nil {
			return false, err
		}
	}
	// The copy's file is never removed here: without a completed first
	// copy it does not exist, or it is a file kept before.
	err = removeAll(c.dir, c.name, false)
	kept = exists(c.target())
	return kept, errors.Join(err, c.closeLocked())
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// removeAll removes the sync state of name in dir and, with copyToo, the
// copy; the .mirror directory goes too once empty.
func removeAll(dir, name string, copyToo bool) error {
	if copyToo {
		if err := removeDurable(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	stateDir := stateDirOf(dir, name)
	if err := os.RemoveAll(stateDir); err != nil {
		return fmt.Errorf("remove the sync state of %s: %w", name, err)
	}
	top := filepath.Join(dir, StateDirName)
	switch err := os.Remove(top); {
	case err == nil:
		return syncDir(dir)
	case errors.Is(err, os.ErrNotExist):
		return nil
	default: // other volumes' state
		return syncDir(top)
	}
}
