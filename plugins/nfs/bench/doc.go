// Package bench holds the file-volume benchmark: a delta sync and a first
// copy of a 1 GiB volume file through the real agent over loopback, next
// to rsync (as a daemon on loopback) and cp in the same run. It has only
// benchmarks; run it with `make bench-nfs` (see docs/benchmarks.md).
package bench
