package pluginhost

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SumsFile is the file of a plugin directory that pins its plugins'
// checksums, in sha256sum's format ("<hex>  <name>" a line). When it
// exists every plugin must be listed in it, with its checksum.
const SumsFile = "SHA256SUMS"

// checkDir refuses a plugin directory anyone may write to: whoever can put
// a file there runs code as the daemon.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("plugin directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("plugin directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("plugin directory %s is world-writable (mode %04o): no plugin is loaded from it until it is not (chmod o-w %s)", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// checkFile refuses a plugin file anyone may write to.
func checkFile(mode fs.FileMode) error {
	if mode.Perm()&0o002 != 0 {
		return fmt.Errorf("the file is world-writable (mode %04o): chmod o-w it", mode.Perm())
	}
	return nil
}

// sums is a parsed SHA256SUMS: file name to checksum in lower-case hex.
type sums map[string]string

// readSums reads dir's SHA256SUMS; nil without error when there is none.
// A file that cannot be read or parsed is an error: then no plugin can be
// verified, and none is loaded.
func readSums(dir string) (sums, error) {
	data, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SumsFile, err)
	}
	s := sums{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, name, ok := strings.Cut(line, " ")
		// sha256sum writes two spaces, or " *" for binary mode.
		name = strings.TrimPrefix(strings.TrimLeft(name, " "), "*")
		if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != sha256.Size || name == "" {
			return nil, fmt.Errorf("%s line %d is not \"<sha256 hex>  <file name>\"", SumsFile, n)
		}
		s[filepath.Base(name)] = strings.ToLower(sum)
	}
	return s, sc.Err()
}

// fileSum is the SHA-256 of the file at path.
func fileSum(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// verify checks the plugin file at path against the directory's sums
// (nil: none pinned) and returns its checksum, which is pinned for every
// start of the process.
func verify(path string, mode fs.FileMode, s sums) ([]byte, error) {
	if err := checkFile(mode); err != nil {
		return nil, err
	}
	name := filepath.Base(path)
	want, listed := s[name]
	if s != nil && !listed {
		return nil, fmt.Errorf("not listed in %s: add its checksum (sha256sum %s >> %s) to load it", SumsFile, name, SumsFile)
	}
	sum, err := fileSum(path)
	if err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(sum); s != nil && got != want {
		return nil, fmt.Errorf("checksum mismatch: %s pins %s, the file is %s", SumsFile, want, got)
	}
	return sum, nil
}
