package secretscan

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const keyring = "AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="

// TestFinds: each secret is found as it is, in base64 alone and inside a
// larger base64 value at every alignment, in JSON and in a log line; the
// report never holds the value.
func TestFinds(t *testing.T) {
	meta := `{"pool":"volumes","keyring":"` + keyring + `"}`
	cases := map[string]string{
		"plain":             "failed to connect with key " + keyring,
		"base64 alone":      base64.StdEncoding.EncodeToString([]byte(keyring)),
		"base64url alone":   base64.URLEncoding.EncodeToString([]byte("right-password")),
		"json value":        mustJSON(map[string]any{"reason": "bad " + keyring}),
		"json []byte value": mustJSON(map[string]any{"metadata": []byte(meta)}), // encoding/json writes base64
	}
	for pad := range 3 {
		cases[fmt.Sprintf("inside base64, offset %d", pad)] = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", pad) + "key=" + keyring + ";"))
	}
	var log strings.Builder
	s := New()
	slog.New(slog.NewTextHandler(s.Writer("log", &log), nil)).Info("connect", "metadata", meta)
	cases["slog text"] = log.String()
	for name, text := range cases {
		s := New()
		s.ScanString(name, text)
		found := s.Found()
		if len(found) == 0 {
			t.Errorf("%s: nothing found in %q", name, text)
			continue
		}
		for _, f := range found {
			if strings.Contains(f.String(), keyring) {
				t.Errorf("%s: the report holds the secret: %s", name, f)
			}
		}
		t.Logf("%s: %s", name, found[0])
	}
	if len(s.Found()) == 0 {
		t.Error("Writer did not scan the log line")
	}
}

// TestClean: text without a secret, and a short secret's partial base64
// that random text may hold, find nothing.
func TestClean(t *testing.T) {
	s := New(Secret{"extra", "n0t-here-either"})
	s.ScanString("status", `{"state_code":"error","reason":"cdm-dr.mirror.volume.failure-start-backend","detail":"keyring of storage clusters/6/storages/13 rejected"}`)
	s.ScanString("uuid", "5f0c3ad2-8d6b-4e53-9a55-2b7f0a4c9e10 Y3Jl bjR0")
	if f := s.Found(); len(f) != 0 {
		t.Fatalf("found %v in clean text", f)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
