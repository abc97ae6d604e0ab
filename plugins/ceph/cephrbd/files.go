package cephrbd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// storageFiles are the private files a storage's connections read.
type storageFiles struct {
	Conf, Keyring, AdminKeyring string
}

func (b *Backend) filesOf(s sdk.Storage, m meta) storageFiles {
	k := storageKey(s)
	return storageFiles{
		Conf:         filepath.Join(b.stateDir, k+".conf"),
		Keyring:      filepath.Join(b.stateDir, k+".client."+m.Client+".keyring"),
		AdminKeyring: filepath.Join(b.stateDir, k+".client."+m.AdminClient+".keyring"),
	}
}

// ensureDir creates dir with mode 0700 (and makes an existing one so).
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// writePrivate writes data to path with mode 0600, atomically, and only
// when it differs from what is there.
func writePrivate(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, 0o600)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeStorageFiles writes a storage's conf and keyrings.
func (b *Backend) writeStorageFiles(s sdk.Storage, m meta) (storageFiles, error) {
	f := b.filesOf(s, m)
	if err := ensureDir(b.stateDir); err != nil {
		return f, fmt.Errorf("state directory %s: %w", b.stateDir, err)
	}
	for _, w := range []struct{ path, text string }{
		{f.Conf, m.Conf + "\n"},
		{f.Keyring, keyringText("client."+m.Client, m.Keyring)},
		{f.AdminKeyring, keyringText("client."+m.AdminClient, m.AdminKeyring)},
	} {
		if err := writePrivate(w.path, []byte(w.text)); err != nil {
			// The path error names the file, not its content.
			return f, fmt.Errorf("write %s: %w", w.path, err)
		}
	}
	return f, nil
}

// removeStorageFiles removes a storage's files; missing ones are fine.
func (b *Backend) removeStorageFiles(s sdk.Storage, m meta) error {
	f := b.filesOf(s, m)
	var errs []error
	for _, p := range []string{f.Conf, f.Keyring, f.AdminKeyring} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
