package pluginhost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSums(t *testing.T) {
	dir := t.TempDir()
	if s, err := readSums(dir); s != nil || err != nil {
		t.Fatalf("no SHA256SUMS: %v, %v; want nil, nil", s, err)
	}
	a, b := strings.Repeat("ab", 32), strings.Repeat("CD", 32)
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# pinned by ops\n" + a + "  ceph\n\n" + b + " *example\n")
	s, err := readSums(dir)
	if err != nil || len(s) != 2 || s["ceph"] != a || s["example"] != strings.ToLower(b) {
		t.Fatalf("readSums = %v, %v", s, err)
	}
	write(a + "  ceph\nnot a checksum  x\n")
	if _, err := readSums(dir); err == nil || !strings.Contains(err.Error(), "SHA256SUMS line 2") {
		t.Fatalf("malformed SHA256SUMS: %v", err)
	}
}

// TestMalformedSums: an unreadable SHA256SUMS verifies nothing, so every
// plugin is refused, saying which line is wrong.
func TestMalformedSums(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "example", "-types="+exampleType)
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := startHost(t, Config{Dir: dir}, nil)
	if st := status(t, host, path); st.State != StateRefused || !strings.Contains(st.Err.Error(), "SHA256SUMS line 1 is not") {
		t.Fatalf("%+v, want refused for the malformed SHA256SUMS", st)
	}
}
