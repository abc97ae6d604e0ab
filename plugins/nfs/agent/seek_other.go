//go:build !linux

package agent

// Elsewhere holes are not looked for: every block is read.
const (
	seekData     = 0
	seekHole     = 0
	canSeekHoles = false
)
