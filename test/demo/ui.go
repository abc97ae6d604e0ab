package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// ui prints the demo's story: numbered steps, indented details, and a
// progress bar redrawn in place on a terminal (one line per change
// otherwise, so a log stays readable).
type ui struct {
	w     io.Writer
	tty   bool
	step  int
	start time.Time
	inBar bool
}

func (u *ui) stepf(format string, args ...any) {
	u.endBar()
	u.step++
	fmt.Fprintf(u.w, "\n%d. %s\n", u.step, fmt.Sprintf(format, args...))
}

func (u *ui) sayf(format string, args ...any) {
	u.endBar()
	fmt.Fprintf(u.w, "   %s\n", fmt.Sprintf(format, args...))
}

// bar draws "[#####.....] 42 %  what".
func (u *ui) bar(pct int, what string) {
	pct = max(0, min(pct, 100))
	const width = 30
	n := pct * width / 100
	line := fmt.Sprintf("   [%s%s] %3d %%  %s", strings.Repeat("#", n), strings.Repeat(".", width-n), pct, what)
	if u.tty {
		fmt.Fprintf(u.w, "\r%-78s", line)
		u.inBar = true
		return
	}
	fmt.Fprintln(u.w, line)
}

func (u *ui) endBar() {
	if u.inBar {
		fmt.Fprintln(u.w)
		u.inBar = false
	}
}

// since is the time since the demo began, for "(at 4.2 s)".
func (u *ui) since() string {
	return fmt.Sprintf("%.1f s", time.Since(u.start).Seconds())
}

// size formats n bytes for people: 320 KiB, 128 MiB.
func size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		if n%(1<<20) == 0 {
			return fmt.Sprintf("%d MiB", n>>20)
		}
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		if n%(1<<10) == 0 {
			return fmt.Sprintf("%d KiB", n>>10)
		}
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

func ms(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// short is the first 12 hex digits of a checksum: enough to compare by eye.
func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}
