package pluginhost

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCutText(t *testing.T) {
	if s := strings.Repeat("a", maxPluginText); cutText(s) != s {
		t.Fatal("a text of maxPluginText bytes was cut")
	}
	// Multi-byte characters across the cut: never split one.
	for _, s := range []string{strings.Repeat("é", maxPluginText), strings.Repeat("x", 7) + strings.Repeat("€", maxPluginText)} {
		got := cutText(s)
		if len(got) > maxPluginText || !utf8.ValidString(got) || !strings.HasSuffix(got, "bytes, cut)") {
			t.Fatalf("cutText of %d bytes = %d bytes, valid UTF-8 %v, ends %q", len(s), len(got), utf8.ValidString(got), got[len(got)-20:])
		}
	}
}
