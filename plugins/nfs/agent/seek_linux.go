package agent

// lseek whences of Linux that find a file's data and holes.
const (
	seekData     = 3
	seekHole     = 4
	canSeekHoles = true
)
