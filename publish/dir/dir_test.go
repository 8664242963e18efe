package dir

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/publishtest"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

const testID = "3f5b9c2e-1d2a-4b7c-9e8f-0a1b2c3d4e5f"

var created = time.Date(2024, 3, 1, 12, 30, 45, 0, time.FixedZone("CET", 3600))

func testImage(t *testing.T, s *publishtest.Blobs) publish.Image {
	kernel := s.Add(t, ims.ArtifactKernel, []byte("kernel bytes"))
	kernel.MD5 = "" // computed by streaming the blob
	return publish.Image{
		Label: "compute", Name: "compute-bookworm", Arch: "x86_64", ID: testID, Key: "k",
		Created: created,
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs:         s.Add(t, ims.ArtifactRootfs, []byte("hsqs rootfs bytes")),
			ims.ArtifactKernel:         kernel,
			ims.ArtifactInitrd:         s.Add(t, ims.ArtifactInitrd, []byte("initrd bytes")),
			ims.ArtifactBootParameters: s.Add(t, ims.ArtifactBootParameters, []byte("console=ttyS0")),
			"log":                      s.Add(t, "log", []byte("build log, not an artifact")),
			ims.SBOMFile:               sbomArtifact(t, s, `{"spdxVersion":"SPDX-2.3"}`),
			ims.ProvenanceFile:         provenanceArtifact(t, s),
		},
	}
}

func provenanceArtifact(t *testing.T, s *publishtest.Blobs) publish.Artifact {
	a := s.Add(t, ims.ProvenanceFile, []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`+"\n"))
	a.MediaType = ims.MediaTypeDSSE
	return a
}

func sbomArtifact(t *testing.T, s *publishtest.Blobs, doc string) publish.Artifact {
	a := s.Add(t, ims.SBOMFile, []byte(doc+"\n"))
	a.MediaType = ims.MediaTypeSPDX
	return a
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func md5File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return md5hex.Of(b)
}

// leftovers lists the temp entries left in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestPublish(t *testing.T) {
	s := publishtest.New(t)
	img := testImage(t, s)
	out := t.TempDir()
	if err := New(out).Publish(t.Context(), s, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	dir := filepath.Join(out, "boot-images", testID)
	for _, name := range []string{"rootfs", "kernel", "initrd", "boot_parameters"} {
		want := s.Bytes(t, img.Outputs[name].Digest)
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "log")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log output published: Stat() = %v, want not exist", err)
	}
	// The SBOM and the provenance are beside the artifacts, and the
	// manifest (golden) lists neither.
	for _, name := range []string{ims.SBOMFile, ims.ProvenanceFile} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, s.Bytes(t, img.Outputs[name].Digest)) {
			t.Errorf("%s = %q, %v; want the %s output", name, got, err, name)
		}
	}
	mdata, err := os.ReadFile(filepath.Join(dir, ims.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ims.ParseManifest(mdata)
	if err != nil {
		t.Fatalf("ParseManifest() = %v", err)
	}
	if m.Created != "2024-03-01 11:30:45" {
		t.Errorf("created = %q, want UTC 2024-03-01 11:30:45", m.Created)
	}
	wantNames := []string{"rootfs", "kernel", "initrd", "boot_parameters"}
	if len(m.Artifacts) != len(wantNames) {
		t.Fatalf("manifest has %d artifacts, want %d", len(m.Artifacts), len(wantNames))
	}
	for i, a := range m.Artifacts {
		name := wantNames[i]
		want := ims.Artifact{
			Link: ims.Link{Path: "s3://boot-images/" + testID + "/" + name, Etag: md5File(t, filepath.Join(dir, name)), Type: "s3"},
			Type: ims.MediaTypeOf(name),
			MD5:  md5File(t, filepath.Join(dir, name)),
		}
		if diff := cmp.Diff(want, a); diff != "" {
			t.Errorf("artifact %d (-want +got):\n%s", i, diff)
		}
	}
	golden(t, "manifest.golden.json", mdata)

	rdata, err := os.ReadFile(filepath.Join(out, "records", "images", testID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "record.golden.json", rdata)
	if !strings.Contains(string(rdata), md5hex.Of(mdata)) {
		t.Errorf("record %s does not carry the manifest md5 %s", rdata, md5hex.Of(mdata))
	}
	if l := leftovers(t, out); len(l) > 0 {
		t.Errorf("leftovers after Publish: %v", l)
	}
}

func TestPublishIdempotent(t *testing.T) {
	s := publishtest.New(t)
	img := testImage(t, s)
	out := t.TempDir()
	p := New(out)
	if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	paths := []string{
		filepath.Join(out, "boot-images", testID),
		filepath.Join(out, "boot-images", testID, "rootfs"),
		filepath.Join(out, "boot-images", testID, ims.ManifestFile),
		filepath.Join(out, "records", "images", testID+".json"),
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, path := range paths {
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() again = %v", err)
	}
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(old) {
			t.Errorf("%s: mtime %v after republish, want unchanged %v", path, fi.ModTime(), old)
		}
	}

	// A new SBOM alone (same artifacts, same manifest) is published too.
	img.Outputs[ims.SBOMFile] = sbomArtifact(t, s, `{"spdxVersion":"SPDX-2.3","name":"v2"}`)
	if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() new SBOM = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "boot-images", testID, ims.SBOMFile)); !strings.Contains(string(b), "v2") {
		t.Errorf("%s = %q after republish, want the new SBOM", ims.SBOMFile, b)
	}

	// New content under the same id replaces the old version atomically.
	img.Outputs[ims.ArtifactInitrd] = s.Add(t, ims.ArtifactInitrd, []byte("initrd v2"))
	delete(img.Outputs, ims.ArtifactBootParameters)
	if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() changed = %v", err)
	}
	dir := filepath.Join(out, "boot-images", testID)
	if b, _ := os.ReadFile(filepath.Join(dir, "initrd")); string(b) != "initrd v2" {
		t.Errorf("initrd = %q after republish, want initrd v2", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "boot_parameters")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale boot_parameters kept: %v", err)
	}
	mdata, _ := os.ReadFile(filepath.Join(dir, ims.ManifestFile))
	rdata, _ := os.ReadFile(filepath.Join(out, "records", "images", testID+".json"))
	if !strings.Contains(string(rdata), md5hex.Of(mdata)) {
		t.Errorf("record not updated to the new manifest md5")
	}
	if l := leftovers(t, out); len(l) > 0 {
		t.Errorf("leftovers after replace: %v", l)
	}
}

func TestPublishCopyFails(t *testing.T) {
	tests := []struct {
		name     string
		existing bool // a good version is already published
	}{{"fresh", false}, {"replacing", true}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := publishtest.New(t)
			img := testImage(t, s)
			out := t.TempDir()
			p := New(out)
			var before []byte
			if tc.existing {
				if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
					t.Fatal(err)
				}
				before, _ = os.ReadFile(filepath.Join(out, "boot-images", testID, ims.ManifestFile))
				img.Outputs[ims.ArtifactKernel] = s.Add(t, ims.ArtifactKernel, []byte("kernel v2"))
			}
			s.Corrupt(t, img.Outputs[ims.ArtifactKernel].Digest)
			err := p.Publish(t.Context(), s, []publish.Image{img})
			if !errors.Is(err, publish.ErrCorrupt) || !strings.Contains(err.Error(), testID) {
				t.Fatalf("Publish() = %v, want ErrCorrupt naming the image", err)
			}
			if l := leftovers(t, out); len(l) > 0 {
				t.Errorf("leftovers after a failed publish: %v", l)
			}
			dir := filepath.Join(out, "boot-images", testID)
			record := filepath.Join(out, "records", "images", testID+".json")
			if !tc.existing {
				for _, p := range []string{dir, record} {
					if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s exists after a failed publish (%v)", p, err)
					}
				}
				return
			}
			after, _ := os.ReadFile(filepath.Join(dir, ims.ManifestFile))
			if !bytes.Equal(before, after) {
				t.Error("the published version changed although the new one failed")
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "kernel")); string(b) != "kernel bytes" {
				t.Errorf("kernel = %q, want the old version kept", b)
			}
		})
	}
}

func TestPublishErrors(t *testing.T) {
	s := publishtest.New(t)
	tests := []struct {
		name string
		edit func(*publish.Image)
		want string
	}{
		{"no rootfs", func(i *publish.Image) { delete(i.Outputs, ims.ArtifactRootfs) }, "0 rootfs"},
		{"bad id", func(i *publish.Image) { i.ID = "../escape" }, "not a plain name"},
		{"empty id", func(i *publish.Image) { i.ID = "" }, "not a plain name"},
		{"missing blob", func(i *publish.Image) {
			i.Outputs[ims.ArtifactKernel] = publish.Artifact{Digest: digest.Digest("sha256:" + strings.Repeat("0", 64)), Size: 1}
		}, "artifact not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := testImage(t, s)
			tc.edit(&img)
			out := t.TempDir()
			err := New(out).Publish(t.Context(), s, []publish.Image{img})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Publish() = %v, want an error with %q", err, tc.want)
			}
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				if e.Name() != "boot-images" {
					t.Errorf("unexpected %s after a failed publish", e.Name())
				}
			}
		})
	}
}

func TestManifestFor(t *testing.T) {
	s := publishtest.New(t)
	img := testImage(t, s)
	if _, err := ManifestFor(img, Bucket); err == nil || !strings.Contains(err.Error(), "kernel has no md5") {
		t.Errorf("ManifestFor() without kernel md5 = %v, want an error", err)
	}
	k := img.Outputs[ims.ArtifactKernel]
	k.MD5 = md5hex.Of([]byte("kernel bytes"))
	img.Outputs[ims.ArtifactKernel] = k
	m, err := ManifestFor(img, "site-bucket")
	if err != nil {
		t.Fatalf("ManifestFor() = %v", err)
	}
	if got, want := m.Artifacts[1].Link.Path, "s3://site-bucket/"+testID+"/kernel"; got != want {
		t.Errorf("kernel link = %q, want %q", got, want)
	}
}

// A published artifact changed in place, same size and mtime, is written
// again by the next publish: the up-to-date check compares content.
func TestPublishRepairsSameSizeCorruption(t *testing.T) {
	for _, withStatCache := range []bool{false, true} {
		t.Run(fmt.Sprintf("statcache=%t", withStatCache), func(t *testing.T) {
			s := publishtest.New(t)
			img := testImage(t, s)
			out := t.TempDir()
			p := New(out)
			if withStatCache {
				sc, err := treehash.OpenStatCache(filepath.Join(t.TempDir(), "statcache"))
				if err != nil {
					t.Fatal(err)
				}
				p.StatCache = sc
			}
			for range 2 { // the second publish checks
				if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
					t.Fatalf("Publish() = %v", err)
				}
			}
			// What it wrote, the publish remembers by stat.
			if n := p.StatCache.Len(); withStatCache && n != 6 {
				t.Errorf("stat cache holds %d files after a publish, want the 4 artifacts, the SBOM and the provenance", n)
			}
			rootfs := filepath.Join(out, "boot-images", testID, "rootfs")
			want, err := os.ReadFile(rootfs)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(rootfs)
			if err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(want)
			copy(bad[4:], "XXXX")
			if err := os.WriteFile(rootfs, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(rootfs, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
				t.Fatalf("Publish() after the damage = %v", err)
			}
			if got, _ := os.ReadFile(rootfs); !bytes.Equal(got, want) {
				t.Errorf("rootfs = %q after republish, want %q", got, want)
			}
			// A symlink in place of an artifact is replaced too.
			if err := os.Remove(rootfs); err != nil {
				t.Fatal(err)
			}
			other := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.WriteFile(other, want, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, rootfs); err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
				t.Fatalf("Publish() over a symlink = %v", err)
			}
			if fi, err := os.Lstat(rootfs); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("rootfs after republish over a symlink: %v, %v; want a regular file", fi, err)
			}
		})
	}
}

func TestManifest(t *testing.T) {
	s := publishtest.New(t)
	img := testImage(t, s)
	p := New(t.TempDir())
	if err := p.Publish(t.Context(), s, []publish.Image{img}); err != nil {
		t.Fatal(err)
	}
	m, err := p.Manifest(testID)
	if err != nil || m == nil || len(m.Artifacts) != 4 || m.Artifacts[0].MD5 != img.Outputs[ims.ArtifactRootfs].MD5 {
		t.Errorf("Manifest(%s) = %+v, %v; want the published manifest", testID, m, err)
	}
	if m, err := p.Manifest("00000000-0000-4000-8000-000000000000"); m != nil || err != nil {
		t.Errorf("Manifest(unpublished) = %+v, %v; want nil, nil", m, err)
	}
	if _, err := p.Manifest("../" + testID); err == nil {
		t.Error("Manifest(../id) = nil error, want the id refused")
	}
}
