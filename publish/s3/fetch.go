package s3

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/ctxio"
	"github.com/imsbuild/imsbuild/publish"
)

// MaxManifestSize bounds the manifest.json Fetch and ManifestDigest read.
const MaxManifestSize = 1 << 20

// FetchedArtifact is one file Fetch or Download wrote.
type FetchedArtifact struct {
	Name      string // rootfs, kernel, initrd, debug_kernel or boot_parameters (Fetch); the file name (Download)
	Path      string // where it is now
	MediaType string // the manifest's type (Fetch); the object's Content-Type (Download)
	MD5       string // hex, verified
	SHA256    string // "sha256:<hex>", the digest of the content
	Size      int64
}

// Fetch downloads the image whose IMS manifest is at manifestURL
// ("s3://bucket/key/manifest.json", optionally with the query parameters of
// ParseURL, which override cfg's) into dst/<artifact name>, one file per
// manifest artifact, named by media type: rootfs, kernel, initrd,
// debug_kernel, boot_parameters. cfg's Bucket and Prefix are not used: the manifest's URL
// and its artifacts' link paths (any bucket of the same endpoint) say where
// the objects are.
//
// Each artifact is streamed to a temp file in dst while its md5 is checked
// against the manifest and against the object's md5sum metadata (and its
// sha256 metadata when present); a read cut in the middle resumes with a
// range request of the same ETag. The files are renamed into place only once
// every artifact is verified, so on failure dst holds nothing Fetch wrote.
// It returns the artifacts by name and the manifest's digest
// ("sha256:<hex>" of its bytes, as ManifestDigest returns).
func Fetch(ctx context.Context, cfg Config, manifestURL, dst string) (arts map[string]FetchedArtifact, manifestDigest string, err error) {
	p, bucket, key, err := openURL(ctx, cfg, manifestURL)
	if err != nil {
		return nil, "", fmt.Errorf("fetch: %w", err)
	}
	url := "s3://" + bucket + "/" + key
	m, digest, err := p.readManifest(ctx, bucket, key)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", url, err)
	}
	plan, err := planFetch(m)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", url, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", url, err)
	}
	var temps []string
	defer func() {
		if err != nil {
			for _, t := range temps {
				os.Remove(t)
			}
		}
	}()
	arts = make(map[string]FetchedArtifact, len(plan))
	for _, a := range plan {
		f, tmp, err := p.download(ctx, a.bucket, a.key, filepath.Join(dst, a.name), a.md5)
		if tmp != "" {
			temps = append(temps, tmp)
		}
		if err != nil {
			return nil, "", fmt.Errorf("fetch %s: %s: %w", url, a.name, err)
		}
		f.Name, f.MediaType = a.name, a.mediaType
		arts[a.name] = f
	}
	for i, a := range plan {
		if err := os.Rename(temps[i], arts[a.name].Path); err != nil {
			for _, done := range plan[:i] {
				os.Remove(arts[done.name].Path)
			}
			return nil, "", fmt.Errorf("fetch %s: %w", url, err)
		}
	}
	return arts, digest, nil
}

// ManifestDigest reads only the manifest at manifestURL (as Fetch takes it)
// and returns "sha256:<hex>" of its bytes, once it parses as an IMS image
// manifest that Fetch could follow. The manifest names every artifact by md5, so the digest
// identifies the image's content: the engine keys imports with it.
func ManifestDigest(ctx context.Context, cfg Config, manifestURL string) (string, error) {
	p, bucket, key, err := openURL(ctx, cfg, manifestURL)
	if err != nil {
		return "", fmt.Errorf("manifest digest: %w", err)
	}
	m, digest, err := p.readManifest(ctx, bucket, key)
	if err == nil {
		_, err = planFetch(m)
	}
	if err != nil {
		return "", fmt.Errorf("manifest digest s3://%s/%s: %w", bucket, key, err)
	}
	return digest, nil
}

// Download writes the object at objectURL (as Fetch takes it) to path,
// through a temp file beside it renamed once verified: the size, the
// object's md5sum and sha256 metadata when present, and wantMD5 when not
// empty. Recipe archives (s3://ims/recipes/<id>/recipe.tgz) are fetched so.
func Download(ctx context.Context, cfg Config, objectURL, path, wantMD5 string) (FetchedArtifact, error) {
	p, bucket, key, err := openURL(ctx, cfg, objectURL)
	if err != nil {
		return FetchedArtifact{}, fmt.Errorf("download: %w", err)
	}
	f, tmp, err := p.download(ctx, bucket, key, path, wantMD5)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		if tmp != "" {
			os.Remove(tmp)
		}
		return FetchedArtifact{}, fmt.Errorf("download s3://%s/%s: %w", bucket, key, err)
	}
	f.Name = filepath.Base(path)
	return f, nil
}

// openURL returns a client for cfg with raw's parameters, and raw's bucket
// and key. Its errors name the URL.
func openURL(ctx context.Context, cfg Config, raw string) (*Publisher, string, string, error) {
	cfg, bucket, key, err := withURL(cfg, raw)
	if err != nil {
		return nil, "", "", err
	}
	p, err := New(ctx, cfg)
	if err != nil {
		return nil, "", "", fmt.Errorf("s3://%s/%s: %w", bucket, key, err)
	}
	return p, bucket, key, nil
}

// readManifest GETs and parses a manifest, returning its digest.
func (p *Publisher) readManifest(ctx context.Context, bucket, key string) (*ims.Manifest, string, error) {
	out, err := p.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, "", p.wrapIn("get", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, MaxManifestSize+1))
	if err != nil {
		return nil, "", p.wrapIn("get", bucket, key, err)
	}
	if len(data) > MaxManifestSize {
		return nil, "", fmt.Errorf("manifest is larger than %d bytes", MaxManifestSize)
	}
	m, err := ims.ParseManifest(data)
	if err != nil {
		return nil, "", err
	}
	return m, digest.FromBytes(data).String(), nil
}

// fetchItem is one artifact to fetch.
type fetchItem struct {
	name, mediaType, bucket, key, md5 string
}

// planFetch names the manifest's artifacts by media type and checks their
// links.
func planFetch(m *ims.Manifest) ([]fetchItem, error) {
	var plan []fetchItem
	seen := map[string]int{}
	for i, a := range m.Artifacts {
		name := ims.ArtifactOf(a.Type)
		if name == "" {
			return nil, fmt.Errorf("artifact %d: unknown media type %q", i, a.Type)
		}
		if j, dup := seen[name]; dup {
			return nil, fmt.Errorf("artifacts %d and %d are both %s", j, i, name)
		}
		seen[name] = i
		bucket, key, err := splitURL(a.Link.Path)
		if err != nil {
			return nil, fmt.Errorf("artifact %d (%s): link: %w", i, name, err)
		}
		if _, err := hex.DecodeString(a.MD5); err != nil {
			return nil, fmt.Errorf("artifact %d (%s): md5 %q is not hex", i, name, a.MD5)
		}
		plan = append(plan, fetchItem{name: name, mediaType: a.Type, bucket: bucket, key: key, md5: strings.ToLower(a.MD5)})
	}
	return plan, nil
}

// download streams bucket/key into a temp file beside path and verifies it.
// It returns the temp file's name (to rename or remove) whenever it created
// one.
func (p *Publisher) download(ctx context.Context, bucket, key, path, wantMD5 string) (FetchedArtifact, string, error) {
	out, err := p.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return FetchedArtifact{}, "", p.wrapIn("get", bucket, key, err)
	}
	defer func() { out.Body.Close() }()
	obj := objectOf(aws.ToInt64(out.ContentLength), aws.ToString(out.ETag), out.Metadata)
	url := "s3://" + bucket + "/" + key
	wantMD5 = strings.ToLower(wantMD5)
	if obj.md5 != "" && wantMD5 != "" && !strings.EqualFold(obj.md5, wantMD5) {
		return FetchedArtifact{}, "", fmt.Errorf("get %s: md5sum metadata is %s, want %s: %w", url, obj.md5, wantMD5, publish.ErrCorrupt)
	}
	if wantMD5 == "" {
		wantMD5 = strings.ToLower(obj.md5)
	}

	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return FetchedArtifact{}, "", err
	}
	tmp := f.Name()
	defer f.Close()
	mh, sh := md5.New(), sha256.New()
	w := io.MultiWriter(f, mh, sh)
	var n int64
	for attempt := 1; ; attempt++ {
		c, err := io.Copy(w, ctxio.Reader(ctx, out.Body))
		n += c
		if err == nil || n >= obj.size {
			break
		}
		if ctx.Err() != nil || attempt >= p.cfg.MaxAttempts || obj.etag == "" {
			return FetchedArtifact{}, tmp, fmt.Errorf("get %s: read at byte %d: %w", url, n, err)
		}
		// Resume where the body broke, from the same object version.
		out.Body.Close()
		out, err = p.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key),
			Range: aws.String(fmt.Sprintf("bytes=%d-", n)), IfMatch: aws.String(`"` + obj.etag + `"`),
		})
		if err != nil {
			return FetchedArtifact{}, tmp, p.wrapIn("get", bucket, key, fmt.Errorf("resume at byte %d: %w", n, err))
		}
	}
	got := FetchedArtifact{
		Path:      path,
		MediaType: aws.ToString(out.ContentType),
		MD5:       hex.EncodeToString(mh.Sum(nil)),
		SHA256:    digest.NewDigest(digest.SHA256, sh).String(),
		Size:      n,
	}
	switch {
	case n != obj.size:
		return FetchedArtifact{}, tmp, fmt.Errorf("get %s: got %d bytes, want %d: %w", url, n, obj.size, publish.ErrCorrupt)
	case wantMD5 != "" && got.MD5 != wantMD5:
		return FetchedArtifact{}, tmp, fmt.Errorf("get %s: content md5 is %s, want %s: %w", url, got.MD5, wantMD5, publish.ErrCorrupt)
	case obj.sha256 != "" && "sha256:"+strings.ToLower(obj.sha256) != got.SHA256:
		return FetchedArtifact{}, tmp, fmt.Errorf("get %s: content is %s, sha256 metadata says %s: %w", url, got.SHA256, obj.sha256, publish.ErrCorrupt)
	}
	if err := f.Sync(); err != nil {
		return FetchedArtifact{}, tmp, err
	}
	if err := f.Close(); err != nil {
		return FetchedArtifact{}, tmp, err
	}
	return got, tmp, nil
}
