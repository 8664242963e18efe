package oci

import (
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
			got, err := record.Marshal(actionRecord{Key: "k1", Action: record.NewAction(res, []byte(tc.preimage))})
			if err != nil || string(got) != string(want) {
				t.Errorf("Marshal() = %s, %v; want %s", got, err, want)
			}
			rec, err := decodeAction(want, "k1")
			if err != nil {
				t.Fatalf("decodeAction() = %v", err)
			}
			if diff := cmp.Diff(res, &rec.Result); diff != "" || string(rec.Bytes()) != tc.preimage {
				t.Errorf("decodeAction() = %+v, preimage %q; want %+v, %q", rec.Result, rec.Bytes(), res, tc.preimage)
			}
			if _, err := decodeAction(want, "k2"); err == nil {
				t.Errorf("decodeAction(key k2) of k1's record = nil error")
			}
		})
	}
}
