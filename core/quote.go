package core

import (
	"strconv"
	"unicode/utf8"
)

// quoteMax is how much of a value Quote shows.
const quoteMax = 64

// Quote quotes s as %q does, clipped to its first 64 bytes with its full
// length said. Values from etcd or the bus end up in error reasons,
// events and logs: a 1 MiB value quoted whole would make the status
// itself too big to write.
func Quote(s string) string {
	if len(s) <= quoteMax {
		return strconv.Quote(s)
	}
	cut := quoteMax
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
