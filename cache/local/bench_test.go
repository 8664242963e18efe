package local

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
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
