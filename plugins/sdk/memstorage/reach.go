package memstorage

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// storageKey names one storage of one cluster.
type storageKey struct{ cluster, storage uint64 }

func keyOf(s sdk.Storage) storageKey { return storageKey{cluster: s.ClusterID, storage: s.StorageID} }

// String names the storage as the daemon's records do.
func (k storageKey) String() string {
	return fmt.Sprintf("clusters.%d.storages.%d", k.cluster, k.storage)
}

// CutStorage makes the storage (by its cluster and storage ids)
// unreachable, as a lost site's is, until restore is called: calls that
// need it fail with ErrRetryable, and those the contract has cope without
// it do what the other storage allows. Cuts add up; restore is
// idempotent.
func (b *Backend) CutStorage(s sdk.Storage) (restore func()) {
	k := keyOf(s)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cuts[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.cuts[k]--; b.cuts[k] == 0 {
				delete(b.cuts, k)
			}
		})
	}
}

// CutFile cuts a storage across the process boundary: named as
// "cut_file" in a storage's metadata, while the file exists the storage
// is unreachable. A harness's plugintest.SourceCutter over the wire calls
// Cut.
type CutFile string

// Cut creates the file; restore removes it (idempotent).
func (f CutFile) Cut() (restore func(), err error) {
	restore, err = touch(string(f))
	if err != nil {
		return nil, fmt.Errorf("cut storage: %w", err)
	}
	return restore, nil
}

// unreachable returns an error wrapping ErrRetryable, naming the storage,
// if it is cut. Callers hold mu.
func (b *Backend) unreachable(s sdk.Storage) error {
	k := keyOf(s)
	if b.cuts[k] > 0 || cutFileExists(s) {
		return fmt.Errorf("storage %s unreachable: %w", k, sdk.ErrRetryable)
	}
	return nil
}

// reach returns the error of the first storage that is unreachable.
// Callers hold mu.
func (b *Backend) reach(storages ...sdk.Storage) error {
	for _, s := range storages {
		if err := b.unreachable(s); err != nil {
			return err
		}
	}
	return nil
}

// cutFileExists reports whether the storage's metadata names a cut file
// that exists. Metadata memstorage cannot read names none: the calls that
// read it say what is wrong with it.
func cutFileExists(s sdk.Storage) bool {
	if len(s.Metadata) == 0 {
		return false
	}
	var m struct {
		CutFile string `json:"cut_file"`
	}
	if json.Unmarshal(s.Metadata, &m) != nil || m.CutFile == "" {
		return false
	}
	return fileExists(m.CutFile)
}
