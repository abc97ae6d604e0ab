//go:build unix

package main

import (
	"io/fs"
	"syscall"
)

// allocatedBytes is the space a file takes on disk: st_blocks × 512.
func allocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
