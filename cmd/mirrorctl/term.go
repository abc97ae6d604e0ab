package main

import "os"

// isTerminal reports whether f is a character device (a terminal): a
// watch then redraws, and purge may ask before deleting.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	fi, err := file.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
