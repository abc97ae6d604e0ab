package fake

import (
	"context"
	"fmt"
	"maps"

	"github.com/cdmdr/mirror/ports"
)

var _ ports.Backends = (*Backends)(nil)

// Backends is a fixed ports.Backends: storage type to backend.
type Backends struct {
	byType map[string]ports.StorageBackend
}

// NewBackends routes each storage type of byType to its backend.
func NewBackends(byType map[string]ports.StorageBackend) *Backends {
	return &Backends{byType: maps.Clone(byType)}
}

// For implements ports.Backends.
func (b *Backends) For(ctx context.Context, storageType string) (ports.StorageBackend, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if be, ok := b.byType[storageType]; ok {
		return be, nil
	}
	return nil, fmt.Errorf("storage type %q: %w", storageType, ports.ErrNoBackend)
}
