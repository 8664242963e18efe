package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// TestRecordGolden pins the config blob of an action manifest to what the
// backend wrote before its record moved to cache/internal/record, so that
// existing registry caches keep hitting.
func TestRecordGolden(t *testing.T) {
	d := func(c string) cache.Digest { return cache.Digest("sha256:" + strings.Repeat(c, 64)) }
	res := &cache.ActionResult{
		Step: "image.base/pack",
		Outputs: map[string]cache.Output{
			"rootfs": {Digest: d("a"), Size: 12, MediaType: "application/vnd.cray.image.rootfs.squashfs", MD5: "ab"},
			"kernel": {Digest: d("b"), Size: 3},
		},
		Builder: "pack/v1",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Log:     d("c"),
	}
	tests := []struct{ name, preimage string }{
		{"inline", `{"type":"imsbuild/pack/v1","html":"<&>"}`},
		{"base64", `{ "a": 1 }`},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", "action-"+tc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			rec := record.NewAction(res, []byte(tc.preimage))
			rec.Key = "k1"
			got, err := record.Marshal(rec)
			if err != nil || string(got) != string(want) {
				t.Errorf("Marshal() = %s, %v; want %s", got, err, want)
			}
			dec, err := record.DecodeAction(want, "k1")
			if err != nil {
				t.Fatalf("DecodeAction() = %v", err)
			}
			if diff := cmp.Diff(res, &dec.Result); diff != "" || string(dec.Bytes()) != tc.preimage || dec.Key != "k1" {
				t.Errorf("DecodeAction() = %+v, key %q, preimage %q; want %+v, k1, %q", dec.Result, dec.Key, dec.Bytes(), res, tc.preimage)
			}
			if _, err := record.DecodeAction(want, "k2"); !errors.Is(err, record.ErrUndecodable) {
				t.Errorf("DecodeAction(key k2) of k1's record = %v, want ErrUndecodable", err)
			}
		})
	}
}
