package engine

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	digest "github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/provenance"
	"github.com/imsbuild/imsbuild/spec"
)

const provSecret = "tok-9c1e55d2a7"

// payloadOf returns the statement of an envelope (not verified).
func payloadOf(t *testing.T, env []byte) map[string]any {
	t.Helper()
	var e struct{ Payload string }
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// publishedProvenance returns the provenance published for image name
// (from the fixture's records) and the image's directory.
func publishedProvenance(t *testing.T, out, name string) ([]byte, string) {
	t.Helper()
	recs, _ := filepath.Glob(filepath.Join(out, "records", "images", "*.json"))
	for _, r := range recs {
		b, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct{ Name string }
		if json.Unmarshal(b, &rec) == nil && rec.Name == name {
			dir := filepath.Join(out, "boot-images", strings.TrimSuffix(filepath.Base(r), ".json"))
			env, err := os.ReadFile(filepath.Join(dir, ims.ProvenanceFile))
			if err != nil {
				t.Fatalf("image %s: %v", name, err)
			}
			return env, dir
		}
	}
	t.Fatalf("image %s not published", name)
	return nil, ""
}

// TestImageProvenance: with a signer, every published image has a signed
// provenance whose subjects are its artifacts and SBOM, whose external
// parameters hold the build files and the variables with sensitive values
// redacted, whose internal parameters are the step's key preimage and whose
// dependencies name the import and the parent by its rootfs. The key
// changes no cache key, and a cold rebuild in another cache signs the same
// statement (ed25519: the same bytes).
func TestImageProvenance(t *testing.T) {
	f := newFixture(t)
	buildFile := []byte("# the build file\n")
	name := filepath.Join(f.cfg.Dir, "build.ims.hcl")
	f.cfg.Files = map[string]*hcl.File{name: {Bytes: buildFile}}
	f.cfg.BuildFiles = []string{name}
	f.cfg.Variables = map[string]spec.Variable{
		"token":   {Value: cty.StringVal(provSecret), Sensitive: true},
		"motd":    {Value: cty.StringVal("hello")},
		"copy":    {Value: cty.ListVal([]cty.Value{cty.StringVal("x " + provSecret)})}, // not declared sensitive, holds the secret
		"release": {Value: cty.NumberIntVal(12)},
	}
	f.cfg.Sensitive = []string{"x " + provSecret, provSecret}
	f.cfg.Images["compute"].Customize[0].Inline += "echo " + provSecret + " >/dev/null\n"
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	opts := func(signer *ed25519.PrivateKey) Options {
		o := Options{HMACKey: []byte("hmac"), Version: "1.2.3", Environ: []string{"SOURCE_DATE_EPOCH=1700000000"}}
		if signer != nil {
			o.Signer = *signer
		}
		return o
	}
	if _, err := f.build(t, t.Context(), opts(&key)); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	env, dir := publishedProvenance(t, f.out, "compute")
	artifacts := map[string]string{}
	for _, n := range []string{ims.ArtifactRootfs, ims.SBOMFile} {
		artifacts[n] = filepath.Join(dir, n)
	}
	if _, err := provenance.Verify(t.Context(), env, key.Public(), artifacts); err != nil {
		t.Fatalf("Verify(published compute) = %v", err)
	}
	if bytes.Contains(env, []byte(provSecret)) {
		t.Fatal("the envelope holds the sensitive value")
	}
	st := payloadOf(t, env)
	if s, _ := json.Marshal(st); bytes.Contains(s, []byte(provSecret)) {
		t.Fatalf("the statement holds the sensitive value:\n%s", s)
	}
	pred := st["predicate"].(map[string]any)
	def := pred["buildDefinition"].(map[string]any)
	ext, _ := json.Marshal(def["externalParameters"])
	wantExt := `{"build_files":[{"path":"build.ims.hcl","sha256":"` + digest.FromBytes(buildFile).Encoded() + `"}],"image":"image.compute","variables":{"copy":["(sensitive value)"],"motd":"hello","release":12,"token":"(sensitive value)"}}`
	if string(ext) != wantExt {
		t.Errorf("externalParameters =\n%s\nwant\n%s", ext, wantExt)
	}
	// The internal parameters are the key preimage the cache recorded.
	_, pre, err := f.cache.Actions().LastKey(t.Context(), "image.compute")
	if err != nil {
		t.Fatal(err)
	}
	var wantPre, gotPre any
	_ = json.Unmarshal(pre, &wantPre)
	gotPre = def["internalParameters"].(map[string]any)["preimage"]
	if a, b := testutil.JSON(t, gotPre), testutil.JSON(t, wantPre); a != b {
		t.Errorf("internalParameters.preimage =\n%s\nwant the recorded preimage\n%s", a, b)
	}
	_, baseDir := publishedProvenance(t, f.out, "base")
	baseRootfs, err := os.ReadFile(filepath.Join(baseDir, ims.ArtifactRootfs))
	if err != nil {
		t.Fatal(err)
	}
	deps := testutil.JSON(t, def["resolvedDependencies"])
	if want := `[{"digest":{"sha256":"` + digest.FromBytes(baseRootfs).Encoded() + `"},"name":"image.base"}]`; deps != want {
		t.Errorf("resolvedDependencies = %s, want %s", deps, want)
	}
	baseEnv, _ := publishedProvenance(t, f.out, "base")
	if deps := testutil.JSON(t, payloadOf(t, baseEnv)["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"]); !strings.Contains(deps, `"name":"import"`) {
		t.Errorf("base resolvedDependencies = %s, want the import", deps)
	}
	if id := testutil.JSON(t, pred["runDetails"]); id != `{"builder":{"id":"https://github.com/imsbuild/imsbuild@1.2.3","version":{"imsbuild":"1.2.3"}}}` {
		t.Errorf("runDetails = %s", id)
	}

	// Without a key: every step cached (the key is in no cache key) and
	// the published provenance stays; verify IMAGE finds it.
	st2, err := f.build(t, t.Context(), opts(nil))
	if err != nil || st2["image.base"] != StatusCached || st2["image.compute"] != StatusCached {
		t.Fatalf("Build() without a key = %v, %v; want both images cached", st2, err)
	}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), opts(nil))
	if err != nil {
		t.Fatal(err)
	}
	img, err := e.Cached(t.Context(), "compute")
	if err != nil {
		t.Fatalf("Cached(compute) = %v", err)
	}
	if digest.Digest(img.Provenance.Digest) != digest.FromBytes(env) || img.Outputs[ims.ArtifactRootfs].Digest == "" {
		t.Errorf("Cached(compute) = %+v, want the published provenance %s", img, digest.FromBytes(env))
	}

	// A cold build in another cache signs the same bytes.
	c2, err := local.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	f.cache = c2
	f.cfg.Settings.Cache.Dir = c2.Dir()
	if err := os.RemoveAll(f.out); err != nil {
		t.Fatal(err)
	}
	if _, err := f.build(t, t.Context(), opts(&key)); err != nil {
		t.Fatalf("cold Build() = %v", err)
	}
	if env2, _ := publishedProvenance(t, f.out, "compute"); !bytes.Equal(env, env2) {
		t.Errorf("a cold rebuild signed another provenance:\n%s\n%s", env, env2)
	}
	// A result built without a key has no provenance to verify.
	c3, err := local.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	f.cache = c3
	f.cfg.Settings.Cache.Dir = c3.Dir()
	if _, err := f.build(t, t.Context(), opts(nil)); err != nil {
		t.Fatal(err)
	}
	e, err = New(f.cfg, c3, c3.Actions(), opts(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Cached(t.Context(), "image.compute"); !errors.Is(err, ErrNoProvenance) {
		t.Errorf("Cached() of an unsigned build = %v, want ErrNoProvenance", err)
	}
	if _, err := e.Cached(t.Context(), "image.nope"); err == nil {
		t.Error("Cached(image.nope) = nil error")
	}
}

// TestKiwiProvenance: a recipe image's provenance names the recipe tree and
// the tracked repository's metadata by digest, and holds the kiwi
// prepare's key preimage beside the image's.
func TestKiwiProvenance(t *testing.T) {
	testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := f.build(t, t.Context(), Options{Signer: key, TrackRepos: true}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	env, _ := publishedProvenance(t, f.out, "base")
	def := payloadOf(t, env)["predicate"].(map[string]any)["buildDefinition"].(map[string]any)
	recipeDigest, err := treehash.Dir(t.Context(), f.cfg.Recipes["node"].Source, nil)
	if err != nil {
		t.Fatal(err)
	}
	release := digest.FromString("Suite: bookworm\nDate: 1\n")
	want := `[{"digest":{"sha256":"` + strings.TrimPrefix(recipeDigest, "sha256:") + `"},"name":"recipe.node"},` +
		`{"digest":{"sha256":"` + release.Encoded() + `"},"name":"repository.debian","uri":"` + srv.URL + `/debian"}]`
	if got := testutil.JSON(t, def["resolvedDependencies"]); got != want {
		t.Errorf("resolvedDependencies =\n%s\nwant\n%s", got, want)
	}
	internal := def["internalParameters"].(map[string]any)
	if p, ok := internal["prepare_preimage"].(map[string]any); !ok || !strings.HasPrefix(p["type"].(string), "imsbuild/kiwi-prepare/v") {
		t.Errorf("internalParameters.prepare_preimage = %v, want the prepare's preimage", internal["prepare_preimage"])
	}
}
