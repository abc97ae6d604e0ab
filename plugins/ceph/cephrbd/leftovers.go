package cephrbd

import (
	"context"
	"fmt"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// FindLeftovers implements sdk.Backend.
func (b *Backend) FindLeftovers(ctx context.Context, q sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("ceph: FindLeftovers is not written yet: %w", sdk.ErrPrecondition)
}
