package ims

import (
	"os"
	"strings"
	"testing"
)

func validManifest() *Manifest {
	return &Manifest{
		Version: ManifestVersion,
		Created: "2026-11-27 03:00:00",
		Artifacts: []Artifact{
			{Link: Link{Path: "s3://boot-images/x/rootfs", Etag: "e", Type: "s3"}, Type: MediaTypeRootfs, MD5: strings.Repeat("a", 32)},
			{Link: Link{Path: "s3://boot-images/x/kernel", Type: "s3"}, Type: MediaTypeKernel, MD5: strings.Repeat("b", 32)},
		},
	}
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(m *Manifest)
		wantErr string
	}{
		{"valid", func(*Manifest) {}, ""},
		{"version", func(m *Manifest) { m.Version = "2.0" }, `manifest version "2.0"`},
		{"created with zone", func(m *Manifest) { m.Created = "2026-11-27T03:00:00Z" }, "manifest created"},
		{"no rootfs", func(m *Manifest) { m.Artifacts = m.Artifacts[1:] }, "0 rootfs artifacts"},
		{"two rootfs", func(m *Manifest) { m.Artifacts = append(m.Artifacts, m.Artifacts[0]) }, "2 rootfs artifacts"},
		{"link type", func(m *Manifest) { m.Artifacts[1].Link.Type = "http" }, "artifact 1: link must be type s3"},
		{"link path", func(m *Manifest) { m.Artifacts[0].Link.Path = "/boot-images/x/rootfs" }, "artifact 0: link must be type s3"},
		{"md5", func(m *Manifest) { m.Artifacts[1].MD5 = "abc" }, "artifact 1: md5"},
		{"no type", func(m *Manifest) { m.Artifacts[1].Type = "" }, "artifact 1: no type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := validManifest()
			tc.mutate(m)
			err := m.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseManifestReference(t *testing.T) {
	data, err := os.ReadFile("testdata/manifest-full.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatalf("ParseManifest(reference) = %v", err)
	}
	if len(m.Artifacts) != 3 || m.Artifacts[2].Type != MediaTypeInitrd {
		t.Fatalf("ParseManifest(reference) = %+v", m)
	}
	if _, err := ParseManifest([]byte(`{"version": 1}`)); err == nil {
		t.Fatal("ParseManifest(bad type) = nil error")
	}
}

func TestImageID(t *testing.T) {
	a := ImageID("compute", "rootfs=sha256:1", "kernel=sha256:2")
	if a != ImageID("compute", "rootfs=sha256:1", "kernel=sha256:2") {
		t.Fatal("ImageID is not deterministic")
	}
	for _, other := range []string{
		ImageID("compute2", "rootfs=sha256:1", "kernel=sha256:2"),
		ImageID("compute", "rootfs=sha256:1"),
		ImageID("compute", "rootfs=sha256:1kernel=sha256:2"),
	} {
		if other == a {
			t.Fatalf("ImageID collision: %s", a)
		}
	}
	if len(a) != 36 || a[14] != '5' {
		t.Fatalf("ImageID() = %q, want a version-5 UUID", a)
	}
}

func TestMediaTypeOf(t *testing.T) {
	for name, want := range map[string]string{
		ArtifactRootfs: MediaTypeRootfs, ArtifactKernel: MediaTypeKernel, ArtifactInitrd: MediaTypeInitrd,
		ArtifactBootParameters: MediaTypeBootParameters, "log": "",
	} {
		if got := MediaTypeOf(name); got != want {
			t.Errorf("MediaTypeOf(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	if data, err := os.ReadFile("testdata/manifest-full.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"version":"1.0","created":"2020-01-14 03:17:14","artifacts":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		// A manifest that parses is valid, and stays valid re-validated.
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseManifest accepted an invalid manifest: %v", err)
		}
	})
}

func TestArtifactOf(t *testing.T) {
	for _, name := range ArtifactNames() {
		if got := ArtifactOf(MediaTypeOf(name)); got != name {
			t.Errorf("ArtifactOf(MediaTypeOf(%q)) = %q, want %q", name, got, name)
		}
	}
	tests := []struct{ mediaType, want string }{
		{"application/vnd.cray.image.debug.kernel", ArtifactDebugKernel},
		{MediaTypeRootfs + ".v2", ArtifactRootfs}, // IMS finds the rootfs by prefix
		{"application/vnd.cray.image.other", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := ArtifactOf(tc.mediaType); got != tc.want {
			t.Errorf("ArtifactOf(%q) = %q, want %q", tc.mediaType, got, tc.want)
		}
	}
}
