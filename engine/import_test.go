package engine

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/sbom"
	"github.com/imsbuild/imsbuild/spec"
)

// TestImportDebugKernel imports an IMS image from S3 whose manifest lists a
// debug_kernel (IMS defines one; its jobs never write it): the import keeps
// it, and a dir publish writes it back in IMS's artifact order. A
// customized import repacks the root, which has no /boot/kernel-parameters:
// it keeps the imported boot_parameters.
func TestImportDebugKernel(t *testing.T) {
	f := newFixture(t)
	sq := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.CommandContext(t.Context(), "mksquashfs", f.cfg.Images["base"].Import, sq, "-no-progress", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	rootfs, err := os.ReadFile(sq)
	if err != nil {
		t.Fatal(err)
	}
	objects := map[string][]byte{
		ims.ArtifactRootfs:         rootfs,
		ims.ArtifactKernel:         []byte("kernel\n"),
		ims.ArtifactInitrd:         []byte("initrd\n"),
		ims.ArtifactDebugKernel:    []byte("debug kernel\n"),
		ims.ArtifactBootParameters: []byte("console=ttyS0\n"),
	}
	url := publishS3(t, objects)
	squashfs := spec.Squashfs{Compression: "zstd", BlockSize: 1 << 20}
	f.cfg.Images = map[string]*spec.Image{
		"imported": {Label: "imported", Name: "imported", Arch: "x86_64", Import: url, Squashfs: squashfs},
		"custom": {Label: "custom", Name: "custom", Arch: "x86_64", Import: url, Squashfs: squashfs,
			KernelFileName: "vmlinuz", InitrdFileName: "initrd",
			Customize: []spec.Customize{{Jail: true, Inline: "echo custom > /etc/role\n"}}},
	}
	f.cfg.Publishes[0].Images = []string{"imported"}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), nil); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	outs := e.result("image.imported").Outputs
	for name, data := range objects {
		if o, ok := outs[name]; !ok || o.MD5 != md5hex.Of(data) {
			t.Errorf("imported %s = %+v (present %t), want md5 %s", name, o, ok, md5hex.Of(data))
		}
	}
	custom := e.result("image.custom").Outputs
	if o := custom[ims.ArtifactBootParameters]; o.MD5 != md5hex.Of(objects[ims.ArtifactBootParameters]) {
		t.Errorf("customized import boot_parameters = %+v, want the imported one", o)
	}
	if custom[ims.ArtifactRootfs].Digest == outs[ims.ArtifactRootfs].Digest {
		t.Error("customized import has the imported rootfs, want it repacked")
	}
	img, err := e.publishImage(t.Context(), "image.imported")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(f.out, "boot-images", img.ID, ims.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := ims.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, a := range pm.Artifacts {
		types = append(types, a.Type)
	}
	want := []string{ims.MediaTypeRootfs, ims.MediaTypeKernel, ims.MediaTypeInitrd, ims.MediaTypeDebugKernel, ims.MediaTypeBootParameters}
	if !slices.Equal(types, want) {
		t.Errorf("published manifest types = %q, want %q", types, want)
	}
	if got, err := os.ReadFile(filepath.Join(f.out, "boot-images", img.ID, ims.ArtifactDebugKernel)); err != nil || string(got) != "debug kernel\n" {
		t.Errorf("published debug_kernel = %q, %v; want the imported one", got, err)
	}
}

// TestImportOwnerChangeRebuilds: a chown in an imported directory (built as
// root, which keeps owners) rebuilds the import, and the new rootfs has the
// new owner; the key said the same before (owners were not hashed), so the
// cache returned the old image with the old owner.
func TestImportOwnerChangeRebuilds(t *testing.T) {
	f := newFixture(t)
	sc, err := treehash.OpenStatCache(filepath.Join(t.TempDir(), "statcache"))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{StatCache: sc}
	if _, err := f.build(t, t.Context(), opts, "image.base"); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if err := os.Chown(filepath.Join(f.cfg.Images["base"].Import, "etc/os-release"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	got, err := f.build(t, t.Context(), opts, "image.base")
	if err != nil {
		t.Fatalf("second Build() = %v", err)
	}
	if got["image.base"] != StatusDone {
		t.Fatalf("statuses after chown = %v, want image.base rebuilt (done)", got)
	}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{StatCache: sc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Plan(t.Context(), []string{"image.base"}, false); err != nil { // fills results from the cache
		t.Fatal(err)
	}
	sq := filepath.Join(t.TempDir(), "rootfs")
	if err := f.cache.Materialize(t.Context(), e.result("image.base").Outputs[ims.ArtifactRootfs].Digest, sq, true); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "unsquashfs", "-lln", sq, "etc/os-release").CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(" 1000/1000 ")) {
		t.Errorf("rootfs listing of etc/os-release:\n%s\nwant owner 1000/1000", out)
	}
}

// publishS3 puts an IMS image (artifact name → bytes) into a bucket of an
// embedded S3 server, as IMS lays it out, and returns its manifest's URL.
func publishS3(t *testing.T, objects map[string][]byte) string {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "boot-images")
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	client := srv.Client(t)
	m := ims.Manifest{Version: ims.ManifestVersion, Created: "2026-01-02 03:04:05"}
	for _, name := range ims.ArtifactNames() {
		data, ok := objects[name]
		if !ok {
			continue
		}
		key := "ims-built/" + name
		if _, err := client.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(key),
			Body: bytes.NewReader(data), Metadata: map[string]string{"md5sum": md5hex.Of(data)}}); err != nil {
			t.Fatal(err)
		}
		m.Artifacts = append(m.Artifacts, ims.Artifact{Link: ims.Link{Path: "s3://boot-images/" + key, Type: "s3"}, Type: ims.MediaTypeOf(name), MD5: md5hex.Of(data)})
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("boot-images"), Key: aws.String("ims-built/manifest.json"), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	return "s3://boot-images/ims-built/manifest.json?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region
}

// TestImportAsPublishedSBOM: an image imported from S3 and reused as
// published (not repacked) has an SBOM like every image, the one a scan of
// the whole root gives, although only the package databases are
// unsquashed: with the license of a package whose doc directory is a
// symlink to another's (libc6 → glibc), and without the rest of the root.
func TestImportAsPublishedSBOM(t *testing.T) {
	f := newFixture(t)
	src := f.cfg.Images["base"].Import
	for p, content := range map[string]string{
		"var/lib/dpkg/status":               "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9\n\nPackage: glibc-doc\nStatus: install ok installed\nArchitecture: all\nSource: glibc\nVersion: 2.36-9\n",
		"usr/share/doc/glibc-doc/copyright": "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: 1991 FSF\nLicense: LGPL-2.1\n",
		"usr/share/doc/glibc-doc/changelog": "not read by the scan\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("glibc-doc", filepath.Join(src, "usr/share/doc/libc6")); err != nil {
		t.Fatal(err)
	}
	const epoch = 1700000000
	var want bytes.Buffer
	doc := sbom.Document{Name: "imported", Created: time.Unix(epoch, 0).UTC(), Tool: "imsbuild"}
	if err := sbom.Generate(t.Context(), src, doc, &want); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(want.Bytes(), []byte(`"licenseDeclared":"LGPL-2.1-only"`)); n != 2 {
		t.Fatalf("scan of the whole root:\n%s\nwant LGPL-2.1 for both packages (found %d)", want.Bytes(), n)
	}
	sq := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.CommandContext(t.Context(), "mksquashfs", src, sq, "-no-progress", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	rootfs, err := os.ReadFile(sq)
	if err != nil {
		t.Fatal(err)
	}
	url := publishS3(t, map[string][]byte{ims.ArtifactRootfs: rootfs, ims.ArtifactKernel: []byte("kernel\n"), ims.ArtifactInitrd: []byte("initrd\n")})
	f.cfg.Images = map[string]*spec.Image{
		"imported": {Label: "imported", Name: "imported", Arch: "x86_64", Import: url, Squashfs: spec.Squashfs{Compression: "zstd", BlockSize: 1 << 20}},
	}
	f.cfg.Publishes = nil
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir(), Environ: []string{"SOURCE_DATE_EPOCH=1700000000"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), nil); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	outs := e.result("image.imported").Outputs
	if o := outs[ims.ArtifactRootfs]; o.MD5 != md5hex.Of(rootfs) {
		t.Errorf("imported rootfs = %+v, want the published one as is (md5 %s)", o, md5hex.Of(rootfs))
	}
	o, ok := outs[ims.SBOMFile]
	if !ok {
		t.Fatalf("outputs = %v, want %s", slices.Sorted(maps.Keys(outs)), ims.SBOMFile)
	}
	got := filepath.Join(t.TempDir(), ims.SBOMFile)
	if err := f.cache.Materialize(t.Context(), o.Digest, got, true); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want.Bytes()) {
		t.Errorf("SBOM of the imported image:\n%s\nwant the scan of the whole root:\n%s", data, want.Bytes())
	}
}
