package core_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// The seed's own values (mirror-daemon-design.ko.md, "key : ... value :"),
// the metadata joined where the document wraps its lines.
const (
	seedStorage613 = `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`
	seedStorage511 = `{"cluster_id":5,"storage_id":11,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`
	seedMetadata   = `{"admin_client":"admin","admin_keyring":"AQDYRuFhPS7hAhAAwWIqa5JedccgV+7iQ7Xj+g==","backend":"ceph","client":"cinder","conf":"# Please do not change this file directly since it is managed by Ansible and will be overwritten\n[global]\ncluster network = 192.168.1.0/24\nfsid = c95ce9a0-97c5-45f8-ba97-eb9b11fbe664\nmon host = [v2:192.168.1.137:3300,v1:192.168.1.136:6789]\nmon initial members = localhost\nosd pool default crush rule = -1\npublic network = 192.168.1.0/24\n\n","driver":"cinder.volume.drivers.rbd.RBDDriver","keyring":"AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA==","pool":"volumes"}`
	seedEnv        = `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`
	seedVolumeUUID = "bae4c30d-3119-4870-807e-0e1a9fcbf185"
	seedVolume     = `{
    "source_cluster_storage": {"cluster_id": 5, "storage_id": 11},
    "target_cluster_storage": {"cluster_id": 6, "storage_id": 13},
    "source_volume": {"cluster_id": 5, "volume_id": 7, "volume_uuid": "bae4c30d-3119-4870-807e-0e1a9fcbf185"},
    "source_agent": {"ip": "192.168.137.101", "port": 8080}
}`
	snapUUID = "6f1c2a9e-0d4b-4c7e-9a51-3b8f2e7d1c04"
)

var (
	keyrings  = []string{"AQDYRuFhPS7hAhAAwWIqa5JedccgV+7iQ7Xj+g==", "AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="}
	sentinels = []error{core.ErrMalformed, core.ErrContradiction, core.ErrUnknownOperation}
)

// checkErr asserts err wraps want and none of the other core sentinels.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Errorf("error %q does not wrap %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("error %q wraps %v as well as %v", err, s, want)
		}
	}
}

func TestDecodeStorage(t *testing.T) {
	t.Parallel()
	ok := map[string]struct {
		ref  core.StorageRef
		data string
		want core.Storage
	}{
		"seed 6/13": {stor613, seedStorage613, core.Storage{ClusterID: 6, StorageID: 13, Type: "openstack.storage.type.ceph", BackendName: "ceph"}},
		"seed 5/11": {stor511, seedStorage511, core.Storage{ClusterID: 5, StorageID: 11, Type: "openstack.storage.type.ceph", BackendName: "ceph"}},
		"contract spacing": {stor613, `{"cluster_id": 6, "storage_id": 13, "type": "openstack.storage.type.ceph", "backend_name": "ceph"}`,
			core.Storage{ClusterID: 6, StorageID: 13, Type: "openstack.storage.type.ceph", BackendName: "ceph"}},
		"unknown fields and no backend_name": {stor613, `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.lvm","status":"available"}`,
			core.Storage{ClusterID: 6, StorageID: 13, Type: "openstack.storage.type.lvm"}},
	}
	for name, c := range ok {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := core.DecodeStorage(c.ref, []byte(c.data))
			if err != nil {
				t.Fatalf("DecodeStorage: %v", err)
			}
			if got != c.want || got.Ref() != c.ref {
				t.Errorf("DecodeStorage = %+v, want %+v", got, c.want)
			}
		})
	}
	bad := map[string]struct {
		ref  core.StorageRef
		data string
		want error
	}{
		"bad JSON":         {stor613, `{"cluster_id":6,`, core.ErrMalformed},
		"empty":            {stor613, ``, core.ErrMalformed},
		"blank":            {stor613, " \n\t", core.ErrMalformed},
		"null":             {stor613, `null`, core.ErrMalformed},
		"array":            {stor613, `[]`, core.ErrMalformed},
		"string id":        {stor613, `{"cluster_id":"6","storage_id":13,"type":"x"}`, core.ErrMalformed},
		"negative id":      {stor613, `{"cluster_id":-6,"storage_id":13,"type":"x"}`, core.ErrMalformed},
		"missing cluster":  {stor613, `{"storage_id":13,"type":"openstack.storage.type.ceph"}`, core.ErrMalformed},
		"missing storage":  {stor613, `{"cluster_id":6,"type":"openstack.storage.type.ceph"}`, core.ErrMalformed},
		"missing type":     {stor613, `{"cluster_id":6,"storage_id":13,"backend_name":"ceph"}`, core.ErrMalformed},
		"empty type":       {stor613, `{"cluster_id":6,"storage_id":13,"type":""}`, core.ErrMalformed},
		"other cluster":    {stor613, seedStorage511, core.ErrContradiction},
		"other storage id": {core.StorageRef{ClusterID: 6, StorageID: 14}, seedStorage613, core.ErrContradiction},
		"other cluster id": {core.StorageRef{ClusterID: 5, StorageID: 13}, seedStorage613, core.ErrContradiction},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := core.DecodeStorage(c.ref, []byte(c.data))
			checkErr(t, err, c.want)
			if err != nil && !strings.Contains(err.Error(), core.StorageKey(c.ref)) {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

func TestDecodeStorageMetadata(t *testing.T) {
	t.Parallel()
	for name, data := range map[string]string{
		"seed":              seedMetadata,
		"spaced, reordered": "{\n  \"pool\": \"volumes\",\n  \"keyring\": \"AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA==\", \"x\": {\"nested\": [1,2]}\n}",
		"empty object":      `{}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := []byte(data)
			got, err := core.DecodeStorageMetadata(stor511, in)
			if err != nil {
				t.Fatalf("DecodeStorageMetadata: %v", err)
			}
			if string(got) != data {
				t.Errorf("metadata changed:\n got %s\nwant %s", got, data)
			}
			// it is a copy: the caller's buffer may be reused
			in[0] = 'X'
			if got[0] != '{' {
				t.Errorf("metadata shares the input buffer")
			}
		})
	}
	// Unknown fields ("driver", "backend") are kept as they are.
	got, err := core.DecodeStorageMetadata(stor511, []byte(seedMetadata))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	if string(m["driver"]) != `"cinder.volume.drivers.rbd.RBDDriver"` || string(m["backend"]) != `"ceph"` {
		t.Errorf("driver = %s, backend = %s", m["driver"], m["backend"])
	}
	if len(m) != 8 {
		t.Errorf("metadata has %d fields, want the seed's 8", len(m))
	}

	bad := map[string]string{
		"truncated":         seedMetadata[:200],
		"truncated keyring": `{"pool":"volumes","keyring":"AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA==","admin_keyring":"AQDYRuFhPS7hAhAAwWIqa5JedccgV+7iQ7Xj+g==`,
		"trailing garbage":  seedMetadata + `x`,
		"keyring unquoted":  `{"keyring":AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA==}`,
		"array":             `["AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="]`,
		"string":            `"AQD9R+FhdwTFMRAADjntqI2NKiW93thZ523ClA=="`,
		"number":            `13`,
		"null":              `null`,
		"empty":             ``,
		"blank":             `   `,
	}
	for name, data := range bad {
		t.Run("bad/"+name, func(t *testing.T) {
			t.Parallel()
			got, err := core.DecodeStorageMetadata(stor511, []byte(data))
			checkErr(t, err, core.ErrMalformed)
			if got != nil {
				t.Errorf("returned %q with the error", got)
			}
			if err == nil {
				return
			}
			for _, k := range keyrings {
				if strings.Contains(err.Error(), k) || strings.Contains(err.Error(), k[:12]) {
					t.Errorf("error %q quotes a keyring", err)
				}
			}
			if !strings.Contains(err.Error(), core.StorageMetadataKey(stor511)) {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

func TestClusterVolumeRecord(t *testing.T) {
	t.Parallel()
	p, err := core.ParseKey("clusters/5/volume/7")
	if err != nil {
		t.Fatal(err)
	}
	var v core.ClusterVolume
	if err := json.Unmarshal([]byte(`{"cluster_id": 5, "volume_id": 7, "volume_uuid": "bae4c30d-3119-4870-807e-0e1a9fcbf185"}`), &v); err != nil {
		t.Fatal(err)
	}
	want := core.ClusterVolume{ClusterID: 5, VolumeID: 7, VolumeUUID: seedVolumeUUID}
	if v != want || v.ClusterID != p.Cluster || v.VolumeID != p.VolumeID {
		t.Errorf("cluster volume = %+v, key %+v", v, p)
	}
	b, _ := json.Marshal(want)
	if string(b) != `{"cluster_id":5,"volume_id":7,"volume_uuid":"bae4c30d-3119-4870-807e-0e1a9fcbf185"}` {
		t.Errorf("encoded %s", b)
	}
}

func TestDecodeEnvironment(t *testing.T) {
	t.Parallel()
	want := core.EnvironmentSpec{Source: stor511, Target: stor613}
	for name, data := range map[string]string{
		"seed": seedEnv,
		"contract example": `{"source_cluster_storage": {"cluster_id": 5, "storage_id": 11},
   "target_cluster_storage": {"cluster_id": 6, "storage_id": 13}}`,
		"unknown fields": `{"source_cluster_storage":{"cluster_id":5,"storage_id":11,"name":"a"},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"plan":3}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := core.DecodeEnvironment(env1113, []byte(data))
			if err != nil {
				t.Fatalf("DecodeEnvironment: %v", err)
			}
			if got != want {
				t.Errorf("DecodeEnvironment = %+v, want %+v", got, want)
			}
		})
	}
	same := `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":5,"storage_id":11}}`
	bad := map[string]struct {
		id   core.EnvironmentID
		data string
		want error
	}{
		"bad JSON":               {env1113, `{"source_cluster_storage":`, core.ErrMalformed},
		"empty":                  {env1113, ``, core.ErrMalformed},
		"null":                   {env1113, `null`, core.ErrMalformed},
		"missing target":         {env1113, `{"source_cluster_storage":{"cluster_id":5,"storage_id":11}}`, core.ErrMalformed},
		"missing source":         {env1113, `{"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`, core.ErrMalformed},
		"wrong type":             {env1113, `{"source_cluster_storage":"5/11","target_cluster_storage":{"cluster_id":6,"storage_id":13}}`, core.ErrMalformed},
		"key says other target":  {core.EnvironmentID{Source: 11, Target: 14}, seedEnv, core.ErrContradiction},
		"key says other source":  {core.EnvironmentID{Source: 12, Target: 13}, seedEnv, core.ErrContradiction},
		"key swapped":            {core.EnvironmentID{Source: 13, Target: 11}, seedEnv, core.ErrContradiction},
		"same source and target": {core.EnvironmentID{Source: 11, Target: 11}, same, core.ErrContradiction},
	}
	for name, c := range bad {
		t.Run("bad/"+name, func(t *testing.T) {
			t.Parallel()
			_, err := core.DecodeEnvironment(c.id, []byte(c.data))
			checkErr(t, err, c.want)
		})
	}
}

func TestDecodeMirrorVolume(t *testing.T) {
	t.Parallel()
	got, err := core.DecodeMirrorVolume(vol7, []byte(seedVolume))
	if err != nil {
		t.Fatalf("DecodeMirrorVolume: %v", err)
	}
	want := core.MirrorVolume{
		Source:       stor511,
		Target:       stor613,
		SourceVolume: core.ClusterVolume{ClusterID: 5, VolumeID: 7, VolumeUUID: seedVolumeUUID},
		SourceAgent:  core.Agent{IP: "192.168.137.101", Port: 8080},
	}
	if got != want {
		t.Errorf("DecodeMirrorVolume = %+v, want %+v", got, want)
	}

	mk := func(src, tgt, vol string) string {
		return `{"source_cluster_storage":` + src + `,"target_cluster_storage":` + tgt + `,"source_volume":` + vol +
			`,"source_agent":{"ip":"192.168.137.101","port":8080}}`
	}
	s511, s613 := `{"cluster_id":5,"storage_id":11}`, `{"cluster_id":6,"storage_id":13}`
	v := func(cluster, id, uuid string) string {
		return `{"cluster_id":` + cluster + `,"volume_id":` + id + `,"volume_uuid":"` + uuid + `"}`
	}
	bad := map[string]struct {
		ref  core.VolumeRef
		data string
		want error
	}{
		"bad JSON":                 {vol7, seedVolume[:40], core.ErrMalformed},
		"empty":                    {vol7, ``, core.ErrMalformed},
		"missing source_volume":    {vol7, `{"source_cluster_storage":` + s511 + `,"target_cluster_storage":` + s613 + `}`, core.ErrMalformed},
		"missing target":           {vol7, `{"source_cluster_storage":` + s511 + `,"source_volume":` + v("5", "7", seedVolumeUUID) + `}`, core.ErrMalformed},
		"placeholder uuid":         {vol7, mk(s511, s613, v("5", "7", "...")), core.ErrMalformed},
		"empty uuid":               {vol7, mk(s511, s613, v("5", "7", "")), core.ErrMalformed},
		"uuid without dashes":      {vol7, mk(s511, s613, v("5", "7", "bae4c30d31194870807e0e1a9fcbf185")), core.ErrMalformed},
		"uuid non-hex":             {vol7, mk(s511, s613, v("5", "7", "zae4c30d-3119-4870-807e-0e1a9fcbf185")), core.ErrMalformed},
		"uuid misplaced dash":      {vol7, mk(s511, s613, v("5", "7", "bae4c30d3-119-4870-807e-0e1a9fcbf185")), core.ErrMalformed},
		"uuid too long":            {vol7, mk(s511, s613, v("5", "7", seedVolumeUUID+"0")), core.ErrMalformed},
		"other volume id":          {vol7, mk(s511, s613, v("5", "8", seedVolumeUUID)), core.ErrContradiction},
		"volume in target cluster": {vol7, mk(s511, s613, v("6", "7", seedVolumeUUID)), core.ErrContradiction},
		"key says other env":       {core.VolumeRef{Env: core.EnvironmentID{Source: 11, Target: 14}, VolumeID: 7}, seedVolume, core.ErrContradiction},
		"key says other volume":    {core.VolumeRef{Env: env1113, VolumeID: 70}, seedVolume, core.ErrContradiction},
		"agent port beyond 65535":  {vol7, strings.Replace(mk(s511, s613, v("5", "7", seedVolumeUUID)), "8080", "65536", 1), core.ErrMalformed},
		"same source and target": {core.VolumeRef{Env: core.EnvironmentID{Source: 11, Target: 11}, VolumeID: 7},
			mk(s511, s511, v("5", "7", seedVolumeUUID)), core.ErrContradiction},
	}
	for name, c := range bad {
		t.Run("bad/"+name, func(t *testing.T) {
			t.Parallel()
			_, err := core.DecodeMirrorVolume(c.ref, []byte(c.data))
			checkErr(t, err, c.want)
			if err != nil && !strings.Contains(err.Error(), core.VolumeKey(c.ref)) {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

func TestDecodeOperations(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"start", "resume", "pause", "stop", "stop_and_delete", "destroy"} {
		got, err := core.DecodeVolumeOperation([]byte(`{"operation": "` + op + `"}`))
		if err != nil || string(got) != op {
			t.Errorf("DecodeVolumeOperation(%s) = %q, %v", op, got, err)
		}
	}
	for _, op := range []string{"start", "stop"} {
		got, err := core.DecodeEnvironmentOperation([]byte(`{"operation":"` + op + `"}`))
		if err != nil || string(got.Operation) != op || got.Force {
			t.Errorf("DecodeEnvironmentOperation(%s) = %+v, %v", op, got, err)
		}
	}
	if got, err := core.DecodeVolumeOperation([]byte(`{"operation":"pause","requested_by":"dr-manager"}`)); err != nil || got != core.OpPause {
		t.Errorf("unknown field: %q, %v", got, err)
	}
	cases := map[string]struct {
		data string
		env  bool
		want error
	}{
		"Start":           {`{"operation":"Start"}`, false, core.ErrUnknownOperation},
		"restart":         {`{"operation":"restart"}`, false, core.ErrUnknownOperation},
		"empty name":      {`{"operation":""}`, false, core.ErrUnknownOperation},
		"missing":         {`{}`, false, core.ErrUnknownOperation},
		"null name":       {`{"operation":null}`, false, core.ErrUnknownOperation},
		"padded":          {`{"operation":" start"}`, false, core.ErrUnknownOperation},
		"stop-and-delete": {`{"operation":"stop-and-delete"}`, false, core.ErrUnknownOperation},
		"number":          {`{"operation":1}`, false, core.ErrMalformed},
		"bad JSON":        {`{"operation":`, false, core.ErrMalformed},
		"empty value":     {``, false, core.ErrMalformed},
		"bare string":     {`"start"`, false, core.ErrMalformed},
		"env pause":       {`{"operation":"pause"}`, true, core.ErrUnknownOperation},
		"env destroy":     {`{"operation":"destroy"}`, true, core.ErrUnknownOperation},
		"env Stop":        {`{"operation":"Stop"}`, true, core.ErrUnknownOperation},
		"env empty name":  {`{"operation":""}`, true, core.ErrUnknownOperation},
		"env bad JSON":    {`{`, true, core.ErrMalformed},
		"env empty value": {``, true, core.ErrMalformed},
		"env force text":  {`{"operation":"stop","force":"yes"}`, true, core.ErrMalformed},
		"env force 1":     {`{"operation":"stop","force":1}`, true, core.ErrMalformed},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var err error
			var got core.Operation
			if c.env {
				var rec core.OperationRecord
				rec, err = core.DecodeEnvironmentOperation([]byte(c.data))
				got = rec.Operation
			} else {
				got, err = core.DecodeVolumeOperation([]byte(c.data))
			}
			checkErr(t, err, c.want)
			if got != "" {
				t.Errorf("returned %q with the error", got)
			}
		})
	}
	forces := map[string]core.OperationRecord{
		`{"operation":"stop","force":true}`:  {Operation: core.OpStop, Force: true},
		`{"operation":"stop","force":false}`: {Operation: core.OpStop},
		`{"operation":"stop","force":null}`:  {Operation: core.OpStop},
		`{"operation":"start","force":true}`: {Operation: core.OpStart}, // a start has nothing to force
	}
	for data, want := range forces {
		if got, err := core.DecodeEnvironmentOperation([]byte(data)); err != nil || got != want {
			t.Errorf("DecodeEnvironmentOperation(%s) = %+v, %v; want %+v", data, got, err, want)
		}
	}
	if got, err := core.DecodeVolumeOperation([]byte(`{"operation":"stop","force":"yes"}`)); err != nil || got != core.OpStop {
		t.Errorf("a volume's operation with force (ignored) = %q, %v", got, err)
	}
	if _, err := core.ParseVolumeOperation("restart"); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("ParseVolumeOperation error %v does not name the operation", err)
	}
}

func TestDecodeStatus(t *testing.T) {
	t.Parallel()
	const orig = `{"state_code": "error", "error_reason": {"code": "cdm-dr.mirror.volume_worker_run.failure-create_storage-unknown", "contents": "could not create storage"}}`
	st, err := core.DecodeStatus([]byte(orig))
	if err != nil {
		t.Fatal(err)
	}
	if st.StateCode != core.StateError || st.ErrorReason == nil ||
		*st.ErrorReason != (core.Reason{Code: "cdm-dr.mirror.volume_worker_run.failure-create_storage-unknown", Contents: "could not create storage"}) {
		t.Errorf("DecodeStatus = %+v", st)
	}
	if st.Operation != "" || st.Progress != nil || st.UpdatedAt != nil {
		t.Errorf("optional fields set: %+v", st)
	}
	for name, data := range map[string]string{
		"seed template (empty state_code)": `{"state_code": "", "error_reason": {"code": "", "contents": ""}}`,
		"missing state_code":               `{"error_reason":{"code":"x","contents":"y"}}`,
		"bad JSON":                         `{"state_code":"mirroring"`,
		"empty":                            ``,
		"null":                             `null`,
		"number state":                     `{"state_code":3}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := core.DecodeStatus([]byte(data))
			checkErr(t, err, core.ErrMalformed)
		})
	}
}

func TestStatusEncode(t *testing.T) {
	t.Parallel()
	if got := string(core.Status{StateCode: core.StateMirroring}.Encode()); got != `{"state_code":"mirroring"}` {
		t.Errorf("minimal status = %s", got)
	}
	zero := 0
	sync := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	upd := sync.Add(time.Minute)
	full := core.Status{
		StateCode:    core.StateInitializing,
		ErrorReason:  &core.Reason{Code: "c", Contents: "w"},
		Operation:    core.OpStart,
		Progress:     &zero,
		LastSyncTime: &sync,
		Lag:          "4 MiB",
		Owner:        "mirrord-1",
		UpdatedAt:    &upd,
	}
	b := full.Encode()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"state_code": `"initializing"`, "error_reason": `{"code":"c","contents":"w"}`, "operation": `"start"`,
		"progress": `0`, "last_sync_time": `"2024-05-01T12:00:00Z"`, "lag": `"4 MiB"`, "owner": `"mirrord-1"`,
		"updated_at": `"2024-05-01T12:01:00Z"`,
	} {
		if string(m[k]) != v {
			t.Errorf("%s = %s, want %s", k, m[k], v)
		}
	}
	if len(m) != 8 {
		t.Errorf("encoded %d fields: %s", len(m), b)
	}
	back, err := core.DecodeStatus(b)
	if err != nil || !back.Same(full) || !back.UpdatedAt.Equal(upd) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	// only error_reason
	if got := string(core.Status{StateCode: core.StateError, ErrorReason: &core.Reason{Code: "a", Contents: "b"}}.Encode()); got != `{"state_code":"error","error_reason":{"code":"a","contents":"b"}}` {
		t.Errorf("error status = %s", got)
	}
}

func TestStatusSame(t *testing.T) {
	t.Parallel()
	t1 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	p1, p2 := 10, 20
	base := func() core.Status {
		return core.Status{StateCode: core.StateMirroring, Operation: core.OpStart, Progress: &p1, UpdatedAt: &t1}
	}
	cases := map[string]struct {
		mod  func(*core.Status)
		same bool
	}{
		"identical":            {func(*core.Status) {}, true},
		"other updated_at":     {func(s *core.Status) { s.UpdatedAt = &t2 }, true},
		"no updated_at":        {func(s *core.Status) { s.UpdatedAt = nil }, true},
		"equal progress copy":  {func(s *core.Status) { p := 10; s.Progress = &p }, true},
		"other state":          {func(s *core.Status) { s.StateCode = core.StateError }, false},
		"other progress":       {func(s *core.Status) { s.Progress = &p2 }, false},
		"no progress":          {func(s *core.Status) { s.Progress = nil }, false},
		"other operation":      {func(s *core.Status) { s.Operation = core.OpResume }, false},
		"a reason":             {func(s *core.Status) { s.ErrorReason = &core.Reason{Code: "x"} }, false},
		"other owner":          {func(s *core.Status) { s.Owner = "b" }, false},
		"other lag":            {func(s *core.Status) { s.Lag = "1" }, false},
		"other last_sync_time": {func(s *core.Status) { s.LastSyncTime = &t2 }, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a, b := base(), base()
			c.mod(&b)
			if got := a.Same(b); got != c.same {
				t.Errorf("Same = %v, want %v", got, c.same)
			}
			if got := b.Same(a); got != c.same {
				t.Errorf("Same is not symmetric")
			}
		})
	}
	// Same must not clear the caller's UpdatedAt.
	a, b := base(), base()
	b.UpdatedAt = &t2
	a.Same(b)
	if a.UpdatedAt == nil || b.UpdatedAt == nil {
		t.Errorf("Same cleared UpdatedAt")
	}
}

func snapshotPayload(clusterID, volumeID, snapshotID, volUUID, snUUID string) string {
	return `{"cluster_id": ` + clusterID + `, "volume_id": ` + volumeID + `, "volume_uuid": "` + volUUID +
		`", "snapshot_id": ` + snapshotID + `, "snapshot_uuid": "` + snUUID + `", "snapshot_name": "daily-2024-05-01"}`
}

func TestDecodeSnapshotEvent(t *testing.T) {
	t.Parallel()
	want := core.SnapshotRecord{ClusterID: 5, VolumeID: 7, VolumeUUID: seedVolumeUUID, SnapshotID: 21,
		SnapshotUUID: snapUUID, SnapshotName: "daily-2024-05-01"}
	got, err := core.DecodeSnapshotEvent([]byte(snapshotPayload("5", "7", "21", seedVolumeUUID, snapUUID)))
	if err != nil || got != want {
		t.Fatalf("DecodeSnapshotEvent = %+v, %v; want %+v", got, err, want)
	}
	// An unnamed snapshot is fine; unknown fields are ignored.
	if _, err := core.DecodeSnapshotEvent([]byte(`{"cluster_id":5,"volume_id":7,"volume_uuid":"` + seedVolumeUUID +
		`","snapshot_id":21,"snapshot_uuid":"` + snapUUID + `","created_at":"now"}`)); err != nil {
		t.Errorf("no name: %v", err)
	}
	bad := map[string]string{
		"placeholder uuids":   `{"cluster_id": 5, "volume_id": 7, "volume_uuid": "...", "snapshot_id": 21, "snapshot_uuid": "...", "snapshot_name": "..."}`,
		"bad volume uuid":     snapshotPayload("5", "7", "21", "x", snapUUID),
		"bad snapshot uuid":   snapshotPayload("5", "7", "21", seedVolumeUUID, "6f1c2a9e0d4b4c7e9a513b8f2e7d1c04"),
		"missing snapshot id": `{"cluster_id":5,"volume_id":7,"volume_uuid":"` + seedVolumeUUID + `","snapshot_uuid":"` + snapUUID + `"}`,
		"missing volume id":   `{"cluster_id":5,"volume_uuid":"` + seedVolumeUUID + `","snapshot_id":21,"snapshot_uuid":"` + snapUUID + `"}`,
		"missing cluster id":  `{"volume_id":7,"volume_uuid":"` + seedVolumeUUID + `","snapshot_id":21,"snapshot_uuid":"` + snapUUID + `"}`,
		"string snapshot id":  snapshotPayload("5", "7", `"21"`, seedVolumeUUID, snapUUID),
		"bad JSON":            `{"cluster_id":5`,
		"empty":               ``,
		"null":                `null`,
	}
	for name, data := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := core.DecodeSnapshotEvent([]byte(data))
			checkErr(t, err, core.ErrMalformed)
		})
	}
}

func TestDecodeSnapshotRecord(t *testing.T) {
	t.Parallel()
	rec := core.SnapshotRecord{ClusterID: 5, VolumeID: 7, VolumeUUID: seedVolumeUUID, SnapshotID: 21,
		SnapshotUUID: snapUUID, SnapshotName: "daily"}
	for _, deleted := range []bool{false, true} {
		r := rec
		r.Deleted = deleted
		enc := r.Encode()
		if strings.Contains(string(enc), "deleted") != deleted {
			t.Errorf("Encode(deleted=%v) = %s", deleted, enc)
		}
		got, err := core.DecodeSnapshotRecord(snap21, enc)
		if err != nil || got != r {
			t.Errorf("round trip = %+v, %v; want %+v", got, err, r)
		}
	}
	if got := string(rec.Encode()); got != `{"cluster_id":5,"volume_id":7,"volume_uuid":"bae4c30d-3119-4870-807e-0e1a9fcbf185","snapshot_id":21,"snapshot_uuid":"6f1c2a9e-0d4b-4c7e-9a51-3b8f2e7d1c04","snapshot_name":"daily"}` {
		t.Errorf("Encode = %s", got)
	}
	enc := rec.Encode()
	cases := map[string]struct {
		ref  core.SnapshotRef
		data []byte
		want error
	}{
		"other snapshot": {core.SnapshotRef{Volume: vol7, SnapshotID: 22}, enc, core.ErrContradiction},
		"other volume":   {core.SnapshotRef{Volume: core.VolumeRef{Env: env1113, VolumeID: 8}, SnapshotID: 21}, enc, core.ErrContradiction},
		"malformed":      {snap21, []byte(`{"snapshot_id":21}`), core.ErrMalformed},
		"empty":          {snap21, nil, core.ErrMalformed},
		// Read as false, the snapshot would be replicated again.
		"deleted not a boolean": {snap21, append(enc[:len(enc)-1:len(enc)-1], []byte(`,"deleted":"yes"}`)...), core.ErrMalformed},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := core.DecodeSnapshotRecord(c.ref, c.data)
			checkErr(t, err, c.want)
			if err != nil && !strings.Contains(err.Error(), core.SnapshotKey(c.ref)) {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

func TestBackendConversions(t *testing.T) {
	t.Parallel()
	src, _ := core.DecodeStorage(stor511, []byte(seedStorage511))
	tgt, _ := core.DecodeStorage(stor613, []byte(seedStorage613))
	meta := json.RawMessage(seedMetadata)
	env, err := core.BackendEnvironment(env1113, src, tgt, meta, json.RawMessage(`{"pool":"volumes"}`))
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != "storage.11.13" || env.Source.StorageID != 11 || env.Target.ClusterID != 6 ||
		env.Source.Type != "openstack.storage.type.ceph" || env.Source.BackendName != "ceph" ||
		string(env.Source.Metadata) != seedMetadata || string(env.Target.Metadata) != `{"pool":"volumes"}` {
		t.Errorf("BackendEnvironment = %+v", env)
	}
	other := tgt
	other.Type = "openstack.storage.type.lvm"
	_, err = core.BackendEnvironment(env1113, src, other, meta, nil)
	checkErr(t, err, core.ErrContradiction)
	if err != nil {
		for _, k := range keyrings {
			if strings.Contains(err.Error(), k) {
				t.Errorf("error quotes a keyring")
			}
		}
	}
	mv, _ := core.DecodeMirrorVolume(vol7, []byte(seedVolume))
	bv := core.BackendVolume(env, mv)
	if bv.VolumeID != 7 || bv.ClusterID != 5 || bv.VolumeUUID != seedVolumeUUID || bv.Environment.ID != env.ID ||
		bv.SourceAgent != (ports.Agent{IP: "192.168.137.101", Port: 8080}) {
		t.Errorf("BackendVolume = %+v", bv)
	}
	bs := core.BackendSnapshot(bv, core.SnapshotRecord{SnapshotID: 21, SnapshotUUID: snapUUID, SnapshotName: "daily"})
	if bs.SnapshotID != 21 || bs.SnapshotUUID != snapUUID || bs.SnapshotName != "daily" || bs.Volume.VolumeID != 7 {
		t.Errorf("BackendSnapshot = %+v", bs)
	}
}

func TestEnvironmentSameStorageIDOnBothSides(t *testing.T) {
	id := core.EnvironmentID{Source: 11, Target: 11}
	_, err := core.DecodeEnvironment(id, []byte(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":11}}`))
	if !errors.Is(err, core.ErrContradiction) {
		t.Fatalf("err = %v, want ErrContradiction: the key cannot tell the two storages apart", err)
	}
}

// TestQuoteClipsHugeValues: a value from etcd goes into a reason at most
// 64 bytes long, its length said, never cut inside a UTF-8 character.
func TestQuoteClipsHugeValues(t *testing.T) {
	t.Parallel()
	if got := core.Quote("restart"); got != `"restart"` {
		t.Errorf("Quote = %s", got)
	}
	huge := strings.Repeat("é", 1<<19) // 1 MiB
	got := core.Quote(huge)
	if len(got) > 100 || !strings.HasPrefix(got, `"éé`) || !strings.HasSuffix(got, `... (1048576 bytes)`) || strings.Contains(got, `\x`) {
		t.Errorf("Quote of 1 MiB = %s", got)
	}
	_, err := core.DecodeVolumeOperation([]byte(`{"operation":"` + strings.Repeat("x", 1<<20) + `"}`))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error of %d bytes for a 1 MiB operation", len(err.Error()))
	}
}
