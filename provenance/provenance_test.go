package provenance

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

func sha(s string) digest.Digest { return digest.FromString(s) }

func testBuild() Build {
	return Build{
		Subjects: []Artifact{
			{Name: "rootfs", Digest: sha("rootfs")},
			{Name: "kernel", Digest: sha("kernel")},
		},
		ExternalParameters: map[string]any{
			"build_files": map[string]string{"build.ims.hcl": string(sha("hcl"))},
			"variables":   map[string]string{"release": "bookworm", "root_password": "(sensitive)"},
			"target":      "image.compute",
		},
		InternalParameters: json.RawMessage(`{"type":"imsbuild/pack/v1","inputs":{"parent":"sha256:00"},"size":4096}`),
		ResolvedDependencies: []Dependency{
			{Name: "recipe.node", Digest: sha("tree")},
			{Name: "repository.debian", URI: "http://deb.debian.org/debian", Digest: sha("Release")},
		},
		BuilderID: "https://ci.example/runner/7",
		Version:   "1.4.0",
	}
}

func TestStatement(t *testing.T) {
	b, err := Statement(testBuild())
	if err != nil {
		t.Fatalf("Statement() = %v", err)
	}
	again, _ := Statement(testBuild())
	if string(b) != string(again) {
		t.Fatalf("Statement() is not deterministic:\n%s\n%s", b, again)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	hex := func(s string) string { return sha(s).Encoded() }
	want := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		// sorted by name
		"subject": []any{
			map[string]any{"name": "kernel", "digest": map[string]any{"sha256": hex("kernel")}},
			map[string]any{"name": "rootfs", "digest": map[string]any{"sha256": hex("rootfs")}},
		},
		"predicate": map[string]any{
			"buildDefinition": map[string]any{
				"buildType": BuildType,
				"externalParameters": map[string]any{
					"build_files": map[string]any{"build.ims.hcl": string(sha("hcl"))},
					"variables":   map[string]any{"release": "bookworm", "root_password": "(sensitive)"},
					"target":      "image.compute",
				},
				"internalParameters": map[string]any{"type": "imsbuild/pack/v1", "inputs": map[string]any{"parent": "sha256:00"}, "size": float64(4096)},
				"resolvedDependencies": []any{
					map[string]any{"name": "recipe.node", "digest": map[string]any{"sha256": hex("tree")}},
					map[string]any{"name": "repository.debian", "uri": "http://deb.debian.org/debian", "digest": map[string]any{"sha256": hex("Release")}},
				},
			},
			"runDetails": map[string]any{
				"builder": map[string]any{"id": "https://ci.example/runner/7", "version": map[string]any{"imsbuild": "1.4.0"}},
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Statement() (-want +got):\n%s", diff)
	}

	// Run metadata is there when given.
	tb := testBuild()
	tb.StartedOn = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tb.InvocationID = "run-1"
	b, err = Statement(tb)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"metadata":{"invocationId":"run-1","startedOn":"2026-12-03T12:00:00Z"}`) {
		t.Errorf("Statement() with run metadata = %s", b)
	}
}

func TestStatementRejects(t *testing.T) {
	md5ish := digest.NewDigestFromEncoded("sha512", strings.Repeat("ab", 64))
	for _, tc := range []struct {
		name string
		edit func(*Build)
		want string
	}{
		{"no subjects", func(b *Build) { b.Subjects = nil }, "no subjects"},
		{"bad digest", func(b *Build) { b.Subjects[0].Digest = "sha256:xyz" }, "subject: rootfs: digest"},
		{"not sha256", func(b *Build) { b.Subjects[0].Digest = md5ish }, "want sha256"},
		{"duplicate subject", func(b *Build) { b.Subjects[1].Name = "rootfs" }, `subject "rootfs" twice`},
		{"nameless subject", func(b *Build) { b.Subjects[0].Name = "" }, "no name"},
		{"external not an object", func(b *Build) { b.ExternalParameters = "x" }, "external parameters: not a JSON object"},
		{"external empty", func(b *Build) { b.ExternalParameters = map[string]any{} }, "externalParameters required"},
		{"internal not an object", func(b *Build) { b.InternalParameters = json.RawMessage(`[1]`) }, "internal parameters: not a JSON object"},
		{"no builder", func(b *Build) { b.BuilderID = "" }, "builder"},
		{"bad dependency", func(b *Build) { b.ResolvedDependencies[0].Digest = "" }, "resolved dependency: recipe.node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testBuild()
			tc.edit(&b)
			_, err := Statement(b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Statement() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
