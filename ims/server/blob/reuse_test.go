package blob

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// TestUploadFileReuse: an artifact an earlier image's manifest lists with
// the same md5 is copied on the S3 side (single-part and multipart
// sources, a one-call and a part-wise copy) with the new object's own
// metadata; a source whose content differs while its md5sum metadata
// claims the same md5 is not copied but uploaded.
func TestUploadFileReuse(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	s.UploadPartSize = 5 << 20
	for _, tc := range []struct {
		name          string
		size          int
		copyThreshold int64
	}{
		{"single part", 1000, MaxCopySize},
		{"multipart source, one copy", 11 << 20, MaxCopySize},
		{"multipart source, copy in parts", 11 << 20, 5 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.CopyThreshold, s.CopyPartSize = tc.copyThreshold, 5<<20
			data := make([]byte, tc.size)
			_, _ = rand.Read(data)
			sum := md5.Sum(data)
			md5sum := hex.EncodeToString(sum[:])
			f := bytes.NewReader(data)
			meta := func(id string) map[string]string {
				return map[string]string{"md5sum": md5sum, "x-shasta-ims-image-id": id}
			}
			// The first image uploads: nothing to copy from.
			if _, copied, err := s.UploadFile(ctx, "bkt", "img1/rootfs", f, int64(len(data)), md5sum, nil, "application/vnd.cray.image.rootfs.squashfs", meta("img1")); err != nil || copied {
				t.Fatalf("first UploadFile: copied %v, %v; want an upload", copied, err)
			}
			manifest, _ := json.Marshal(map[string]any{"version": "1.0", "created": "2026-12-03 14:00:00", "artifacts": []any{
				map[string]any{"link": map[string]any{"path": "s3://bkt/img1/rootfs", "etag": "", "type": "s3"}, "md5": md5sum, "type": "application/vnd.cray.image.rootfs.squashfs"},
			}})
			if err := s.Put(ctx, "bkt", "img1/manifest.json", manifest, "application/json"); err != nil {
				t.Fatal(err)
			}
			from := s.ArtifactSources(ctx, []string{"s3://bkt/missing/manifest.json", "s3://bkt/img1/manifest.json"})
			if from[md5sum] != "s3://bkt/img1/rootfs" {
				t.Fatalf("ArtifactSources = %v, want %s at s3://bkt/img1/rootfs", from, md5sum)
			}
			etag, copied, err := s.UploadFile(ctx, "bkt", "img2/rootfs", f, int64(len(data)), md5sum, from, "application/vnd.cray.image.rootfs.squashfs", meta("img2"))
			if err != nil || !copied {
				t.Fatalf("second UploadFile: copied %v, %v; want a copy", copied, err)
			}
			s.checkObject(t, "img2/rootfs", data, etag, meta("img2"))

			// Another client overwrites img1's rootfs with other bytes
			// and a forged md5sum: S3's ETag gives it away.
			other := bytes.Repeat([]byte{'x'}, len(data))
			if _, err := s.Upload(ctx, "bkt", "img1/rootfs", bytes.NewReader(other), int64(len(other)), "application/octet-stream", meta("img1")); err != nil {
				t.Fatal(err)
			}
			etag, copied, err = s.UploadFile(ctx, "bkt", "img3/rootfs", f, int64(len(data)), md5sum, from, "application/vnd.cray.image.rootfs.squashfs", meta("img3"))
			if err != nil || copied {
				t.Fatalf("UploadFile from a forged source: copied %v, %v; want an upload", copied, err)
			}
			s.checkObject(t, "img3/rootfs", data, etag, meta("img3"))
		})
	}
}

func (s *Store) checkObject(t *testing.T, key string, data []byte, etag string, meta map[string]string) {
	t.Helper()
	ctx := context.Background()
	got, err := s.Read(ctx, "bkt", key, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("%s: content differs (%d bytes, want %d)", key, len(got), len(data))
	}
	info, err := s.Head(ctx, "bkt", key)
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag != etag {
		t.Errorf("%s: ETag %q, UploadFile returned %q", key, info.ETag, etag)
	}
	for k, v := range meta {
		if info.Metadata[k] != v {
			t.Errorf("%s: metadata %v, want %s=%s", key, info.Metadata, k, v)
		}
	}
}
