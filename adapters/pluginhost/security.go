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
	"syscall"
)

// SumsFile is the file of a plugin directory that pins its plugins'
// checksums, in sha256sum's format ("<hex>  <name>" a line). When it
// exists every plugin must be listed in it, with its checksum.
const SumsFile = "SHA256SUMS"

// checkDir refuses a plugin directory that others than its owner may
// write to, or that a user other than root and the daemon's own owns:
// whoever can put a file there runs code as the daemon
// (docs/writing-a-plugin.md, "Install").
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("plugin directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("plugin directory %s is not a directory", dir)
	}
	if why := unsafeOwnerOrMode(fi); why != "" {
		return fmt.Errorf("plugin directory %s %s: no plugin is loaded from it until it is not (%s)", dir, why, fixHint(fi, dir))
	}
	return nil
}

// checkFile refuses a plugin file that others than its owner may write
// to or that another user owns. A symbolic link is judged by the file it
// points at, and by that file's directory: whoever may write there can
// replace the file.
func checkFile(path string) error {
	fi, err := os.Stat(path) // through symbolic links
	if err != nil {
		return fmt.Errorf("plugin file %s: %w", path, err)
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("plugin file %s: %w", path, err)
	}
	name := path
	if target != path {
		name = fmt.Sprintf("%s (a link to %s)", path, target)
	}
	if why := unsafeOwnerOrMode(fi); why != "" {
		return fmt.Errorf("plugin file %s %s: it is not run until it is not (%s)", name, why, fixHint(fi, target))
	}
	if target == path {
		return nil // its directory is the plugin directory, checked by checkDir
	}
	dir := filepath.Dir(target)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("plugin file %s: its directory: %w", name, err)
	}
	// A sticky directory (/tmp) lets no one else replace the file.
	if di.Mode()&fs.ModeSticky == 0 {
		if why := unsafeOwnerOrMode(di); why != "" {
			return fmt.Errorf("plugin file %s lies in directory %s, which %s: it is not run until that is fixed (%s)", name, dir, why, fixHint(di, dir))
		}
	}
	return nil
}

// unsafeOwnerOrMode says why others than root and the daemon's user could
// change fi ("" when they cannot): it is writable by its group or by
// anyone, or another non-root user owns it.
func unsafeOwnerOrMode(fi fs.FileInfo) string {
	perm := fi.Mode().Perm()
	switch {
	case perm&0o002 != 0:
		return fmt.Sprintf("is world-writable (mode %04o)", perm)
	case perm&0o020 != 0:
		return fmt.Sprintf("is group-writable (mode %04o)", perm)
	}
	if uid, ok := ownerOf(fi); ok && uid != 0 && uid != os.Geteuid() {
		return fmt.Sprintf("is owned by uid %d, neither root nor the daemon's user (uid %d) (mode %04o)", uid, os.Geteuid(), perm)
	}
	return ""
}

// fixHint is the command that makes fi safe.
func fixHint(fi fs.FileInfo, path string) string {
	if fi.Mode().Perm()&0o022 != 0 {
		return "chmod go-w " + path
	}
	return "chown root " + path
}

// ownerOf is the uid owning fi, where the system says.
func ownerOf(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
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
func verify(path string, s sums) ([]byte, error) {
	if err := checkFile(path); err != nil {
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
