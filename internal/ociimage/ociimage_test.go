package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/imsbuild/imsbuild/internal/untar"
)

var epoch = time.Unix(1767225600, 0).UTC()

func testImage(t *testing.T) v1.Image {
	t.Helper()
	l, err := FilesLayer([]File{
		{Path: "usr/bin/tool", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
		{Path: "/etc/conf", Mode: 0o644, Data: []byte("x=1\n")},
	}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image([]v1.Layer{l}, Config{Entrypoint: []string{"/usr/bin/tool"}, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestWriteLayoutReproducible: the same image written twice gives the same
// bytes, and the tar is an OCI layout that an OCI client reads back as that
// image, named by the reference in its index.
func TestWriteLayoutReproducible(t *testing.T) {
	var a, b bytes.Buffer
	da, err := WriteLayout(&a, testImage(t), "imsbuild.local/test:1")
	if err != nil {
		t.Fatal(err)
	}
	db, err := WriteLayout(&b, testImage(t), "imsbuild.local/test:1")
	if err != nil {
		t.Fatal(err)
	}
	if da != db || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("two writes differ: %s %s", da, db)
	}
	dir := t.TempDir()
	if err := untar.Extract(t.Context(), bytes.NewReader(a.Bytes()), dir, untar.Options{}); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != da ||
		im.Manifests[0].Annotations[containerdNameAnnotation] != "imsbuild.local/test:1" ||
		im.Manifests[0].Annotations[refNameAnnotation] != "1" {
		t.Fatalf("index = %+v, want one manifest %s named imsbuild.local/test:1", im.Manifests, da)
	}
	img, err := p.Image(da)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(epoch) || cf.Config.Entrypoint[0] != "/usr/bin/tool" {
		t.Errorf("config = %+v", cf)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
	}
	for _, name := range []string{"usr", "usr/bin", "usr/bin/tool", "etc", "etc/conf"} {
		h, ok := files[name]
		if !ok {
			t.Errorf("layer lacks %s (has %v)", name, files)
			continue
		}
		if !h.ModTime.Equal(epoch) || h.Uid != 0 {
			t.Errorf("%s: mtime %v uid %d, want %v and root", name, h.ModTime, h.Uid, epoch)
		}
	}
}

func TestFilesLayerRejectsPathsOutside(t *testing.T) {
	for _, p := range []string{"../etc/passwd", "a/../../b", "/", "."} {
		if _, err := FilesLayer([]File{{Path: p, Data: []byte("x")}}, epoch); err == nil {
			t.Errorf("FilesLayer(%q) = nil error, want one", p)
		}
	}
}

// TestNormalizeTar: a root packed at another time, by another user name,
// with other PAX records, normalizes to the same bytes; extended attributes
// (file capabilities) survive.
func TestNormalizeTar(t *testing.T) {
	pack := func(mtime time.Time, uname string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range []*tar.Header{
			{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime, Uname: uname},
			{Name: "bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 4, ModTime: mtime, AccessTime: mtime, ChangeTime: mtime, Uname: uname, Uid: 0,
				PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "cap", "MMDEBSTRAP.note": uname}, Format: tar.FormatPAX},
		} {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Size > 0 {
				tw.Write([]byte("ping"))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	var a, b bytes.Buffer
	if err := NormalizeTar(&a, bytes.NewReader(pack(epoch.Add(48*time.Hour), "root")), epoch); err != nil {
		t.Fatal(err)
	}
	if err := NormalizeTar(&b, bytes.NewReader(pack(epoch.Add(time.Hour+time.Second/3), "builder")), epoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two normalized tars of the same tree differ")
	}
	tr := tar.NewReader(&a)
	tr.Next()
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !h.ModTime.Equal(epoch) || h.Uname != "" || h.PAXRecords["SCHILY.xattr.security.capability"] != "cap" || h.PAXRecords["MMDEBSTRAP.note"] != "" {
		t.Errorf("header = %+v", h)
	}
	// An older file keeps its time (to the second).
	var c bytes.Buffer
	old := epoch.Add(-time.Hour)
	if err := NormalizeTar(&c, bytes.NewReader(pack(old, "root")), epoch); err != nil {
		t.Fatal(err)
	}
	h, _ = tar.NewReader(&c).Next()
	if !h.ModTime.Equal(old) {
		t.Errorf("mtime %v, want %v kept", h.ModTime, old)
	}
}
