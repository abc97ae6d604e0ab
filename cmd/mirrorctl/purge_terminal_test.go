package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: the side mirrorctl reads as its stdin,
// and the side the test types into.
func openPTY(t *testing.T) (term, keyboard *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pseudo-terminal's other side: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, m
}

// TestPurgeAsksOnATerminal: without --yes, purge on a terminal asks, and
// deletes only after "yes".
func TestPurgeAsksOnATerminal(t *testing.T) {
	f := newFixture(t)
	f.seed()
	const vol = "mirror_volume/storage.11.13/volume.7"
	for _, c := range []struct {
		answer  string
		deleted bool
	}{{"no\n", false}, {"y\n", false}, {"yes\n", true}} {
		term, keyboard := openPTY(t)
		if _, err := keyboard.WriteString(c.answer); err != nil {
			t.Fatal(err)
		}
		r := f.runWith(t.Context(), term, &syncBuffer{}, "purge", "storage.11.13/volume.7")
		if r.code != exitOK || !strings.Contains(r.stderr, "type yes") {
			t.Fatalf("answer %q: exit %d, stderr %q: want the question", c.answer, r.code, r.stderr)
		}
		_, kept := f.get(vol)
		if kept == c.deleted {
			t.Fatalf("answer %q: volume record kept=%v\n%s", c.answer, kept, r.stdout)
		}
		if !c.deleted && !strings.Contains(r.stdout, "dry run: nothing deleted") {
			t.Fatalf("answer %q: stdout %q", c.answer, r.stdout)
		}
	}
}
