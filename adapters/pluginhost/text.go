package pluginhost

import (
	"fmt"
	"unicode/utf8"
)

// maxPluginText bounds each text a plugin sends the daemon (an error's
// message, a description, a lag): it ends up in a status or an event, and
// etcd refuses a request over 1.5 MiB by default, so a plugin sending a
// huge one would leave the volume's status unwritten (docs/reliability/plugins.md).
const maxPluginText = 4096

// cutText is s, or its beginning with how long it was when it is longer
// than maxPluginText; cut between characters, never inside one.
func cutText(s string) string {
	if len(s) <= maxPluginText {
		return s
	}
	tail := fmt.Sprintf("… (%d bytes, cut)", len(s))
	n := maxPluginText - len(tail)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + tail
}
