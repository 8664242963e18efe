package blob

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/imsbuild/imsbuild/ims"
)

// Sources maps an artifact's md5 to the s3:// URL where an earlier
// image keeps it: what an upload of the same bytes can copy instead.
type Sources map[string]string

// maxManifest bounds the manifests ArtifactSources reads, as IMS's link
// validation does.
const maxManifest = 1 << 20

// ArtifactSources reads the image manifests at the s3:// URLs manifests
// and returns their artifacts by md5. A manifest that cannot be read or
// parsed is left out: reuse only saves an upload.
func (s *Store) ArtifactSources(ctx context.Context, manifests []string) Sources {
	src := Sources{}
	for _, u := range manifests {
		bucket, key, err := ParseURL(u)
		if err != nil {
			continue
		}
		data, err := s.Read(ctx, bucket, key, maxManifest)
		if err != nil {
			continue
		}
		m, err := ims.ParseManifest(data)
		if err != nil {
			continue
		}
		for _, a := range m.Artifacts {
			if _, seen := src[a.MD5]; !seen && a.MD5 != "" && a.Link.Type == "s3" {
				src[a.MD5] = a.Link.Path
			}
		}
	}
	return src
}

// UploadFile writes size bytes of f to bucket/key with contentType and
// metadata and returns the new object's ETag, as Upload does; but when
// from has an object in bucket for md5 (f's md5) whose content S3 vouches
// is f's, it copies that object on the S3 side instead, so no byte goes
// over the wire, and reports copied. S3 vouches through the ETag, which
// no client sets: a single-part object's is its md5, a multipart one's
// is compared with f's in UploadPartSize parts. A source's metadata is
// not trusted, and a failed copy falls back to the upload.
func (s *Store) UploadFile(ctx context.Context, bucket, key string, f io.ReaderAt, size int64, md5sum string, from Sources, contentType string, metadata map[string]string) (etag string, copied bool, err error) {
	if u, ok := from[md5sum]; ok && md5sum != "" {
		if b, src, err := ParseURL(u); err == nil && b == bucket && src != key {
			if s.sameContent(ctx, bucket, src, f, size, md5sum) {
				etag, err := s.copyObject(ctx, bucket, src, key, size, &newMeta{contentType: contentType, metadata: metadata})
				if err == nil {
					return etag, true, nil
				}
			}
		}
	}
	etag, err = s.Upload(ctx, bucket, key, io.NewSectionReader(f, 0, size), size, contentType, metadata)
	return etag, false, err
}

// sameContent reports whether bucket/key holds the size bytes of f,
// whose md5 is md5sum, as the object's size and ETag show.
func (s *Store) sameContent(ctx context.Context, bucket, key string, f io.ReaderAt, size int64, md5sum string) bool {
	info, err := s.Head(ctx, bucket, key)
	if err != nil || info.Size != size {
		return false
	}
	etag := strings.ToLower(info.ETag)
	sum, parts, multipart := strings.Cut(etag, "-")
	if !multipart {
		return etag == strings.ToLower(md5sum)
	}
	n, err := strconv.Atoi(parts)
	if err != nil || n < 1 || s.UploadPartSize <= 0 || int64(n) != (size+s.UploadPartSize-1)/s.UploadPartSize {
		return false
	}
	local, err := multipartETag(f, size, s.UploadPartSize)
	return err == nil && local == sum+"-"+parts
}

// multipartETag is the ETag S3 gives size bytes of f uploaded in parts
// of partSize: the md5 of the parts' md5s, a dash, the number of parts.
func multipartETag(f io.ReaderAt, size, partSize int64) (string, error) {
	all := md5.New()
	n := 0
	for off := int64(0); off < size; off += partSize {
		h := md5.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, off, min(partSize, size-off))); err != nil {
			return "", fmt.Errorf("hash part %d: %w", n+1, err)
		}
		all.Write(h.Sum(nil))
		n++
	}
	return hex.EncodeToString(all.Sum(nil)) + "-" + strconv.Itoa(n), nil
}
