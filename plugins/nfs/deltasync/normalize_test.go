package deltasync

import (
	"bytes"
	"context"
	"testing"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/deltasync/deltatest"
)

// A block whose length changed since the sums (the file changed size) is
// fitted to the length the copy will have, with the sum of what is
// written.
func TestNormalizeFitsTheBlockToTheCopy(t *testing.T) {
	data := append(bytes.Repeat([]byte{7}, 100), make([]byte, 50)...)
	block := func(d []byte) agentproto.Block {
		return agentproto.Block{Index: 3, Kind: agentproto.KindData, Sum: agentproto.SumOf(d), Data: d}
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want int
		kind agentproto.Kind
	}{
		{"same length", data, 150, agentproto.KindData},
		{"longer: cut", data, 120, agentproto.KindData},
		{"shorter: padded", data, 400, agentproto.KindData},
		{"cut to zeros", append(make([]byte, 20), 5), 20, agentproto.KindZero},
	} {
		rec, err := normalize(block(tc.in), tc.want)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rec.Kind != tc.kind {
			t.Fatalf("%s: kind %d, want %d", tc.name, rec.Kind, tc.kind)
		}
		if tc.kind == agentproto.KindZero {
			continue
		}
		want := make([]byte, tc.want)
		copy(want, tc.in)
		if !bytes.Equal(rec.Data, want) || rec.Sum != agentproto.SumOf(want) {
			t.Fatalf("%s: data or sum does not match what is written", tc.name)
		}
	}
}

// A block changed after the sums were read is applied as it was sent, and
// the index takes its sum: the next sync sees what it must.
func TestBlockChangedDuringTheTransfer(t *testing.T) {
	e := newEnv(t)
	e.write(0, 16*bs, 1)
	c := e.open(Options{BlockSize: bs})
	if _, err := c.Sync(t.Context(), e.source); err != nil {
		t.Fatal(err)
	}
	e.write(3*bs, bs, 2)
	e.source.OnBlock(func(i uint64) {
		if i == 3 {
			e.write(3*bs, 10, 3) // the block being fetched
			e.write(9*bs, 10, 4) // a block not fetched this time
		}
	})
	if res, err := c.Sync(t.Context(), e.source); err != nil || res.BlocksChanged != 1 {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	e.source.OnBlock(nil)
	res, err := c.Sync(t.Context(), e.source)
	if err != nil || res.BlocksChanged != 1 {
		t.Fatalf("next sync: %+v, %v; want block 9 only", res, err)
	}
	e.requireEqual()
}

// damaging damages block bad's data on the way in a first copy's range,
// with the sum of what arrives: as a run damaged in transit reaches the
// copy (runs carry no sums; see agentproto's protocol).
type damaging struct {
	*deltatest.Source
	bad uint64
}

func (s damaging) Blocks(ctx context.Context, name string, bs int, from, to uint64, idx []uint64, fn func(agentproto.Block) error) (int64, error) {
	return s.Source.Blocks(ctx, name, bs, from, to, idx, func(b agentproto.Block) error {
		if idx == nil && b.Index == s.bad {
			b.Data = append([]byte(nil), b.Data...)
			b.Data[10] ^= 0x40
			b.Sum = agentproto.SumOf(b.Data)
		}
		return fn(b)
	})
}

// A block damaged on its way in the first copy is repaired by the delta
// sync that ends every first copy: it compares the source's sums of every
// block with the copy's.
func TestFirstCopyDamagedInTransitIsRepaired(t *testing.T) {
	e := newEnv(t)
	e.write(0, 64*bs, 1)
	c := e.open(Options{BlockSize: bs})
	res, err := c.Sync(t.Context(), damaging{e.source, 20})
	if err != nil {
		t.Fatal(err)
	}
	if !res.FirstCopy || res.BlocksChanged != 1 {
		t.Fatalf("result %+v: want a first copy whose delta sync fetched the damaged block", res)
	}
	e.requireEqual()
}
