package core

import "fmt"

// ResourceKind is what a daemon leads: an environment or a mirror volume.
type ResourceKind int

// Resource kinds.
const (
	ResourceEnvironment ResourceKind = iota + 1
	ResourceVolume
)

// Subjects name a resource's kind in reason codes and logs.
const (
	SubjectEnvironment = "environment"
	SubjectVolume      = "volume"
	SubjectSnapshot    = "snapshot"
)

// Resource is one environment or mirror volume: the unit a daemon leads,
// reconciles and writes a status for. It is parsed once from a key and
// passed around typed.
type Resource struct {
	Kind ResourceKind
	// Env is the environment, or the volume's environment.
	Env EnvironmentID
	// Volume is set for ResourceVolume.
	Volume VolumeRef
}

// EnvironmentResource is the environment id as a resource.
func EnvironmentResource(id EnvironmentID) Resource {
	return Resource{Kind: ResourceEnvironment, Env: id}
}

// VolumeResource is the mirror volume ref as a resource.
func VolumeResource(v VolumeRef) Resource {
	return Resource{Kind: ResourceVolume, Env: v.Env, Volume: v}
}

// Key is the resource's record key; its other keys are below it.
func (r Resource) Key() string {
	if r.Kind == ResourceVolume {
		return VolumeKey(r.Volume)
	}
	return EnvironmentKey(r.Env)
}

// StatusKey is where the resource's leader writes its status.
func (r Resource) StatusKey() string {
	if r.Kind == ResourceVolume {
		return VolumeStatusKey(r.Volume)
	}
	return EnvironmentStatusKey(r.Env)
}

// OperationKey is where the DR manager asks for an operation.
func (r Resource) OperationKey() string {
	if r.Kind == ResourceVolume {
		return VolumeOperationKey(r.Volume)
	}
	return EnvironmentOperationKey(r.Env)
}

// Subject names the kind in reason codes: "environment" or "volume".
func (r Resource) Subject() string {
	if r.Kind == ResourceVolume {
		return SubjectVolume
	}
	return SubjectEnvironment
}

func (r Resource) String() string { return r.Key() }

// Resource is the environment or volume a key belongs to: its record,
// operation and status keys, and for a volume its snapshot keys. Storage
// and cluster keys belong to no resource.
func (p ParsedKey) Resource() (Resource, bool) {
	switch p.Kind {
	case KindEnvironment, KindEnvironmentOperation, KindEnvironmentStatus:
		return EnvironmentResource(p.Env), true
	case KindVolume, KindVolumeOperation, KindVolumeStatus, KindSnapshot, KindSnapshotStatus:
		return VolumeResource(p.Volume), true
	}
	return Resource{}, false
}

// ParseResource parses a resource's record key (an environment or volume
// key, nothing below it).
func ParseResource(key string) (Resource, error) {
	p, err := ParseKey(key)
	if err != nil {
		return Resource{}, err
	}
	if p.Kind != KindEnvironment && p.Kind != KindVolume {
		return Resource{}, fmt.Errorf("key %s is a %s key, not an environment or volume record", Quote(key), p.Kind)
	}
	r, _ := p.Resource()
	return r, nil
}
