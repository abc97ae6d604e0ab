package app

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// resolveError is a failure to assemble what a backend call needs, with
// the step that failed (it becomes part of the error_reason code).
type resolveError struct {
	step string
	err  error
}

func (e *resolveError) Error() string { return e.err.Error() }
func (e *resolveError) Unwrap() error { return e.err }

// resolve finds the storages of a pair in the cache and the backend that
// serves their type.
func (e *Engine) resolve(ctx context.Context, id core.EnvironmentID, src, tgt core.StorageRef) (ports.Environment, ports.StorageBackend, error) {
	s, sm, err := e.storage(src)
	if err != nil {
		return ports.Environment{}, nil, &resolveError{"get_storage", err}
	}
	t, tm, err := e.storage(tgt)
	if err != nil {
		return ports.Environment{}, nil, &resolveError{"get_storage", err}
	}
	env, err := core.BackendEnvironment(id, s, t, sm, tm)
	if err != nil {
		return ports.Environment{}, nil, &resolveError{"create_storage", err}
	}
	b, err := e.backends.For(ctx, s.Type)
	if err != nil {
		return ports.Environment{}, nil, &resolveError{"get_backend", fmt.Errorf("storage %s is of type %s: %w", core.StorageKey(src), core.Quote(s.Type), err)}
	}
	return env, b, nil
}

// storage reads a storage and its metadata from the cache.
func (e *Engine) storage(ref core.StorageRef) (core.Storage, json.RawMessage, error) {
	data, ok := e.cache.get(core.StorageKey(ref))
	if !ok {
		return core.Storage{}, nil, fmt.Errorf("storage %s does not exist: %w", core.StorageKey(ref), ports.ErrNotFound)
	}
	s, err := core.DecodeStorage(ref, data)
	if err != nil {
		return core.Storage{}, nil, err
	}
	var meta json.RawMessage
	if data, ok := e.cache.get(core.StorageMetadataKey(ref)); ok {
		if meta, err = core.DecodeStorageMetadata(ref, data); err != nil {
			return core.Storage{}, nil, err
		}
	}
	return s, meta, nil
}

// stepOf names the step of a resolve error, or fallback.
func stepOf(err error, fallback string) string {
	if re, ok := err.(*resolveError); ok {
		return re.step
	}
	return fallback
}
