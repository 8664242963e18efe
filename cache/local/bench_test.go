package local

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
)

const benchSize = 64 << 20

func benchData() []byte {
	data := make([]byte, benchSize)
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], uint64(i)*0x9e3779b97f4a7c15)
	}
	return data
}

// BenchmarkPut stores a new 64 MiB blob per iteration (stream, hash, fsync,
// rename).
func BenchmarkPut(b *testing.B) {
	c := newCache(b)
	data := benchData()
	b.SetBytes(benchSize)
	i := uint64(0)
	for b.Loop() {
		i++
		binary.LittleEndian.PutUint64(data, i) // a new blob each time
		if _, _, err := c.Put(b.Context(), bytes.NewReader(data), ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutFile stores a 64 MiB file (reflink or copy, hash).
func BenchmarkPutFile(b *testing.B) {
	c := newCache(b)
	p := filepath.Join(b.TempDir(), "rootfs")
	if err := os.WriteFile(p, benchData(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, _, err := c.PutFile(b.Context(), p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMaterialize copies a 64 MiB blob out, verifying it.
func BenchmarkMaterialize(b *testing.B) {
	c := newCache(b)
	d, _, err := c.Put(b.Context(), bytes.NewReader(benchData()), "")
	if err != nil {
		b.Fatal(err)
	}
	dst := filepath.Join(b.TempDir(), "out")
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := c.Materialize(b.Context(), d, dst, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkActionGet is a warm hit, what a no-op build does per step: read
// and decode the record, check its three blobs against their verified
// records, mark it used.
func BenchmarkActionGet(b *testing.B) {
	c := newCache(b)
	res := &cache.ActionResult{Step: "image.base/pack", Outputs: map[string]cache.Output{}}
	for _, name := range []string{"rootfs", "kernel", "initrd"} {
		d, n, err := c.Put(b.Context(), bytes.NewReader([]byte(name)), "")
		if err != nil {
			b.Fatal(err)
		}
		res.Outputs[name] = cache.Output{Digest: d, Size: n}
	}
	key := strings.Repeat("ab", 32)
	if err := c.Actions().Put(b.Context(), key, []byte(`{"type":"imsbuild/pack/v1"}`), res); err != nil {
		b.Fatal(err)
	}
	ac := c.Actions()
	for b.Loop() {
		if _, err := ac.Get(b.Context(), key); err != nil {
			b.Fatal(err)
		}
	}
}
