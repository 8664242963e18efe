package actions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// mem is a Backend in memory that counts its writes; blobs says which
// blobs are stored (false: stored but corrupt).
type mem struct {
	records map[string][]byte
	blobs   map[cache.Digest]bool
	puts    int
}

func newMem() *mem { return &mem{records: map[string][]byte{}, blobs: map[cache.Digest]bool{}} }

func (m *mem) Get(_ context.Context, kind Kind, name string) ([]byte, error) {
	data, ok := m.records[kind.String()+"/"+name]
	if !ok {
		return nil, cache.ErrNotFound
	}
	if len(data) > record.MaxSize {
		return nil, record.ErrUndecodable
	}
	return data, nil
}

func (m *mem) Put(ctx context.Context, kind Kind, name string, data []byte, res *cache.ActionResult) error {
	if res != nil {
		if err := m.Check(ctx, record.Refs(res)); err != nil {
			return err
		}
	}
	m.puts++
	m.records[kind.String()+"/"+name] = data
	return nil
}

func (m *mem) Check(_ context.Context, refs []cache.Digest) error {
	for _, d := range refs {
		ok, stored := m.blobs[d]
		if !stored {
			return fmt.Errorf("blob %s: %w", d, cache.ErrNotFound)
		}
		if !ok {
			return fmt.Errorf("blob %s: %w", d, cache.ErrCorrupt)
		}
	}
	return nil
}

// owned is a mem that owns its records.
type owned struct {
	*mem
	used []string
}

func (o *owned) Drop(_ context.Context, key string) error {
	delete(o.records, "action/"+key)
	return nil
}

func (o *owned) Used(_ context.Context, key string) { o.used = append(o.used, key) }

func (m *mem) blob(s string) cache.Digest {
	d := cache.Digest(digest.FromString(s))
	m.blobs[d] = true
	return d
}

func result(d cache.Digest) *cache.ActionResult {
	return &cache.ActionResult{Step: "s", Outputs: map[string]cache.Output{"rootfs": {Digest: d, Size: 1}}}
}

var key = strings.Repeat("ab", 32)

func TestGetMisses(t *testing.T) {
	tests := []struct {
		name    string
		record  string // written as the action record of key; "" = none
		keyed   bool
		corrupt bool // the result's blob is corrupt
		err     error
	}{
		{name: "absent"},
		{name: "not json", record: `{"result":`},
		{name: "too large", record: strings.Repeat(" ", record.MaxSize+1)},
		{name: "another key", record: `{"key":"k2","result":{"outputs":{}}}`},
		{name: "keyless when keyed", record: `{"result":{"outputs":{}}}`, keyed: true},
		{name: "corrupt blob", corrupt: true, err: cache.ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMem()
			var opts []Option
			if tc.keyed {
				opts = append(opts, WithKeyInRecord())
			}
			c := New(m, opts...)
			if tc.record != "" {
				m.records["action/"+key] = []byte(tc.record)
			}
			if tc.corrupt {
				d := m.blob("r")
				if err := c.Put(t.Context(), key, nil, result(d)); err != nil {
					t.Fatal(err)
				}
				m.blobs[d] = false
			}
			res, err := c.Get(t.Context(), key)
			if !errors.Is(err, cache.ErrNotFound) || tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("Get() = %+v, %v; want ErrNotFound (and %v)", res, err, tc.err)
			}
			// Not an Owner: the record stays for whoever can read it.
			if tc.record != "" && string(m.records["action/"+key]) != tc.record {
				t.Errorf("Get() changed the record of a backend that does not own it")
			}
		})
	}
}

func TestKeyInRecord(t *testing.T) {
	m := newMem()
	d := m.blob("r")
	for _, keyed := range []bool{false, true} {
		c := New(m)
		if keyed {
			c = New(m, WithKeyInRecord())
		}
		if err := c.Put(t.Context(), key, []byte(`{}`), result(d)); err != nil {
			t.Fatal(err)
		}
		rec, err := record.DecodeAction(m.records["action/"+key], key)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: key}[keyed]; rec.Key != want {
			t.Errorf("keyed %v: record key = %q, want %q", keyed, rec.Key, want)
		}
		if got, err := c.Get(t.Context(), key); err != nil || !cmp.Equal(got.Outputs, result(d).Outputs) {
			t.Errorf("keyed %v: Get() = %+v, %v", keyed, got, err)
		}
	}
}

func TestOwner(t *testing.T) {
	o := &owned{mem: newMem()}
	c := New(o)
	o.records["action/"+key] = []byte(`{"result":`)
	if _, err := c.Get(t.Context(), key); !errors.Is(err, cache.ErrNotFound) || !errors.Is(err, record.ErrUndecodable) {
		t.Errorf("Get(undecodable) = %v, want ErrNotFound and ErrUndecodable", err)
	}
	if _, ok := o.records["action/"+key]; ok {
		t.Errorf("Get(undecodable) kept the record of a backend that owns it")
	}
	if len(o.used) != 0 {
		t.Errorf("a miss marked %v used", o.used)
	}
	if err := c.Put(t.Context(), key, nil, result(o.blob("r"))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(o.used, []string{key}) {
		t.Errorf("used = %v after one hit, want [%s]", o.used, key)
	}
}

func TestPutRefusesMissingBlob(t *testing.T) {
	m := newMem()
	if err := New(m).Put(t.Context(), key, nil, result(cache.Digest(digest.FromString("absent")))); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Put() = %v, want ErrNotFound", err)
	}
	if m.puts != 0 {
		t.Errorf("Put() wrote %d records", m.puts)
	}
}

func TestSetLastKeyUnchangedWritesNothing(t *testing.T) {
	m := newMem()
	c := New(m)
	for range 3 {
		if err := c.SetLastKey(t.Context(), "image.base", key, []byte(`{"a":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if m.puts != 1 {
		t.Errorf("3 equal SetLastKey() wrote %d times, want 1", m.puts)
	}
	if err := c.SetLastKey(t.Context(), "image.base", key, []byte(`{"a":2}`)); err != nil || m.puts != 2 {
		t.Errorf("SetLastKey(changed preimage) = %v after %d writes, want a second write", err, m.puts)
	}
	m.records["step/image.base"] = []byte(`{"step":"image.other","key":"k"}`)
	if _, _, err := c.LastKey(t.Context(), "image.base"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("LastKey(record of another step) = %v, want ErrNotFound", err)
	}
}
