package record

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
)

func digest(c string) cache.Digest { return cache.Digest("sha256:" + strings.Repeat(c, 64)) }

func testResult() *cache.ActionResult {
	return &cache.ActionResult{
		Step: "image.base/pack",
		Outputs: map[string]cache.Output{
			"rootfs": {Digest: digest("a"), Size: 12, MediaType: "application/vnd.cray.image.rootfs.squashfs", MD5: "ab"},
			"kernel": {Digest: digest("b"), Size: 3},
		},
		Builder: "pack/v1",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Log:     digest("c"),
	}
}

// The golden files were written by the record code of cache/local before it
// moved here: existing caches must keep decoding, and new records must stay
// byte-identical.
var goldenTests = []struct {
	name     string
	preimage string
}{
	{"inline", `{"type":"imsbuild/pack/v1","html":"<&>"}`}, // compact JSON, kept as is (no HTML escaping)
	{"base64", `{ "a": 1 }`},                               // not compact: preimageBytes
	{"empty", ""},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenTests {
		t.Run(tc.name, func(t *testing.T) {
			wantAction := readGolden(t, "action-"+tc.name+".json")
			got, err := Marshal(NewAction(testResult(), []byte(tc.preimage)))
			if err != nil || string(got) != wantAction {
				t.Errorf("Marshal(NewAction()) = %s, %v; want %s", got, err, wantAction)
			}
			a, err := DecodeAction([]byte(wantAction), "k1")
			if err != nil {
				t.Fatalf("DecodeAction() = %v", err)
			}
			if diff := cmp.Diff(testResult(), &a.Result); diff != "" {
				t.Errorf("DecodeAction() result (-want +got):\n%s", diff)
			}
			if string(a.Bytes()) != tc.preimage {
				t.Errorf("DecodeAction() preimage = %q, want %q", a.Bytes(), tc.preimage)
			}

			wantStep := readGolden(t, "step-"+tc.name+".json")
			got, err = Marshal(NewStep("image.base/pack", "k1", []byte(tc.preimage)))
			if err != nil || string(got) != wantStep {
				t.Errorf("Marshal(NewStep()) = %s, %v; want %s", got, err, wantStep)
			}
			key, pre, err := DecodeStep([]byte(wantStep), "image.base/pack")
			if tc.name == "empty" {
				if err != nil || key != "k1" || len(pre) != 0 {
					t.Errorf("DecodeStep() = %q, %q, %v; want k1 and no preimage", key, pre, err)
				}
				return
			}
			if err != nil || key != "k1" || string(pre) != tc.preimage {
				t.Errorf("DecodeStep() = %q, %q, %v; want k1, %q", key, pre, err, tc.preimage)
			}
		})
	}
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewAction(t *testing.T) {
	res := testResult()
	res.Created = time.Time{}
	before := time.Now()
	a := NewAction(res, nil)
	if c := a.Result.Created; c.Before(before.Add(-time.Second)) || c.Location() != time.UTC {
		t.Errorf("NewAction(zero Created).Created = %v, want now in UTC", c)
	}
	if !res.Created.IsZero() {
		t.Errorf("NewAction() changed the caller's result: Created = %v", res.Created)
	}
	if got := NewAction(testResult(), nil).Result.Created; !got.Equal(testResult().Created) {
		t.Errorf("NewAction().Created = %v, want %v kept", got, testResult().Created)
	}
}

func TestDecodeUndecodable(t *testing.T) {
	actions := []struct{ name, data string }{
		{"truncated", `{"result":{"outputs":`},
		{"not json", "\x00\x01"},
		{"bad output digest", `{"result":{"outputs":{"rootfs":{"digest":"sha256:zz"}}}}`},
		{"bad log digest", `{"result":{"outputs":{},"log":"md5:00"}}`},
		{"another key", `{"key":"k2","result":{"outputs":{}}}`},
	}
	for _, tc := range actions {
		t.Run("action/"+tc.name, func(t *testing.T) {
			if a, err := DecodeAction([]byte(tc.data), "k1"); !errors.Is(err, ErrUndecodable) {
				t.Errorf("DecodeAction(%q) = %v, %v; want ErrUndecodable", tc.data, a, err)
			}
		})
	}
	steps := []struct{ name, data string }{
		{"other step", `{"step":"image.other","key":"k1"}`},
		{"no key", `{"step":"s"}`},
		{"not json", `{"step":`},
	}
	for _, tc := range steps {
		t.Run("step/"+tc.name, func(t *testing.T) {
			step := "s"
			if tc.name == "other step" {
				step = "image.base"
			}
			if k, _, err := DecodeStep([]byte(tc.data), step); !errors.Is(err, ErrUndecodable) {
				t.Errorf("DecodeStep(%q) = %q, %v; want ErrUndecodable", tc.data, k, err)
			}
		})
	}
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{strings.Repeat("ab", 32), true},
		{"Key_1.2-x", true},
		{"", false},
		{".hidden", false},
		{"a/b", false},
		{"a b", false},
		{strings.Repeat("k", 200), true},
		{strings.Repeat("k", 201), false},
	}
	for _, tc := range tests {
		if err := CheckKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("CheckKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
	}
}

func TestStepFile(t *testing.T) {
	tests := []struct{ step, want string }{
		{"image.base/pack", "image.base_pack-"},
		{"image.base_pack", "image.base_pack-"},
		{strings.Repeat("x", 100), strings.Repeat("x", 80) + "-"},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		got, err := StepFile(tc.step)
		if err != nil || !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, ".json") || len(got) != len(tc.want)+12+len(".json") {
			t.Errorf("StepFile(%q) = %q, %v; want %q + 12 hex + .json", tc.step, got, err, tc.want)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("StepFile(%q) = StepFile(%q) = %q", tc.step, other, got)
		}
		seen[got] = tc.step
	}
	// The name cache/local has always given it: existing caches keep their
	// last keys.
	if got, _ := StepFile("image.base/pack"); got != "image.base_pack-336798420f3f.json" {
		t.Errorf("StepFile(image.base/pack) = %q, want image.base_pack-336798420f3f.json", got)
	}
	if _, err := StepFile(""); err == nil {
		t.Errorf("StepFile(\"\") = nil error")
	}
}

func TestRefs(t *testing.T) {
	res := testResult()
	res.Outputs["copy"] = cache.Output{Digest: digest("a")}
	want := []cache.Digest{digest("a"), digest("b"), digest("c")}
	if diff := cmp.Diff(want, Refs(res)); diff != "" {
		t.Errorf("Refs() (-want +got):\n%s", diff)
	}
	res.Log = ""
	if diff := cmp.Diff(want[:2], Refs(res)); diff != "" {
		t.Errorf("Refs(no log) (-want +got):\n%s", diff)
	}
}
