package dir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/publish"
)

// Bucket is the IMS bucket the layout mirrors.
const Bucket = "boot-images"

// Publisher writes to a directory.
type Publisher struct {
	Path string
	// StatCache, when set, remembers the digests of published files by
	// their stat, so that checking an unchanged image reads nothing.
	StatCache *treehash.StatCache
}

// New returns a dir publisher writing under path.
func New(path string) *Publisher { return &Publisher{Path: path} }

// Publish writes each image atomically (temp dir + rename); an image already
// present with the same manifest and artifact contents is left as it is.
func (p *Publisher) Publish(ctx context.Context, blobs publish.Blobs, images []publish.Image) error {
	for _, img := range images {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("publish dir %s: %w", p.Path, err)
		}
		if err := p.publish(ctx, blobs, img); err != nil {
			return fmt.Errorf("publish dir %s: image %s (%s): %w", p.Path, img.Label, img.ID, err)
		}
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, blobs publish.Blobs, img publish.Image) error {
	if err := checkID(img.ID); err != nil {
		return err
	}
	outs, err := withMD5(ctx, blobs, img.Outputs)
	if err != nil {
		return err
	}
	img.Outputs = outs
	m, err := ManifestFor(img, Bucket)
	if err != nil {
		return err
	}
	manifest, err := marshal(m)
	if err != nil {
		return err
	}
	final := filepath.Join(p.Path, Bucket, img.ID)
	ok, err := p.upToDate(ctx, final, manifest, outs)
	if err != nil {
		return err
	}
	if !ok {
		if err := p.writeImage(ctx, blobs, final, manifest, outs); err != nil {
			return err
		}
	}
	record, err := marshal(RecordFor(img, Bucket, manifest))
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(p.Path, "records", "images", img.ID+".json"), record)
}

// checkID refuses ids that are not a single plain path element.
func checkID(id string) error {
	if id == "" || strings.ContainsAny(id, `/\`+"\x00") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("image id %q is not a plain name", id)
	}
	return nil
}

// withMD5 returns a copy of outs where every missing md5 is computed by
// streaming the blob (Blobs.Open verifies its digest at EOF).
func withMD5(ctx context.Context, blobs publish.Blobs, outs map[string]publish.Artifact) (map[string]publish.Artifact, error) {
	res := make(map[string]publish.Artifact, len(outs))
	for name, o := range outs {
		if o.MD5 == "" && ims.MediaTypeOf(name) != "" {
			sum, err := blobMD5(ctx, blobs, o.Digest)
			if err != nil {
				return nil, fmt.Errorf("md5 of %s %s: %w", name, o.Digest, err)
			}
			o.MD5 = sum
		}
		res[name] = o
	}
	return res, nil
}

func blobMD5(ctx context.Context, blobs publish.Blobs, d digest.Digest) (string, error) {
	rc, err := blobs.Open(ctx, d)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return md5hex.OfReader(rc)
}

// upToDate reports whether dir already holds exactly this manifest,
// artifacts and SBOM: regular files with the content of their blobs. The content is
// compared, not only the size, so a same-size corruption of a published
// file is repaired by the next publish; the stat cache keeps an unchanged
// file from being read again.
func (p *Publisher) upToDate(ctx context.Context, dir string, manifest []byte, outs map[string]publish.Artifact) (bool, error) {
	cur, err := os.ReadFile(filepath.Join(dir, ims.ManifestFile))
	if err != nil || !bytes.Equal(cur, manifest) {
		return false, nil
	}
	for _, name := range fileOrder() {
		o, ok := outs[name]
		if !ok {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != o.Size {
			return false, nil
		}
		d, err := treehash.File(ctx, path, p.StatCache)
		if err != nil {
			if ctx.Err() != nil {
				return false, err
			}
			return false, nil // unreadable: write it again
		}
		if digest.Digest(d) != o.Digest {
			return false, nil
		}
	}
	return true, nil
}

// writeImage materializes the artifacts, the SBOM and the manifest (last) into a temp
// dir under p.Path and moves it to final, swapping out an older version.
func (p *Publisher) writeImage(ctx context.Context, blobs publish.Blobs, final string, manifest []byte, outs map[string]publish.Artifact) error {
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(p.Path, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // after the swap it holds the old version, if any
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, name := range fileOrder() {
		o, ok := outs[name]
		if !ok {
			continue
		}
		dst := filepath.Join(tmp, name)
		if err := copyBlob(ctx, blobs, o.Digest, dst); err != nil {
			return fmt.Errorf("materialize %s %s: %w", name, o.Digest, err)
		}
		if err := syncFile(dst, o.Size); err != nil {
			return fmt.Errorf("materialize %s %s: %w", name, o.Digest, err)
		}
	}
	if err := createFile(filepath.Join(tmp, ims.ManifestFile), manifest); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := swap(tmp, final); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return err
	}
	// The copies were verified as they were made: the next publish need
	// not read them to know they are up to date.
	for _, name := range fileOrder() {
		if o, ok := outs[name]; ok {
			_ = p.StatCache.RecordWritten(filepath.Join(final, name), string(o.Digest))
		}
	}
	return nil
}

// swap moves the directory tmp to final. If final exists it is exchanged
// atomically (renameat2 RENAME_EXCHANGE), leaving the old version in tmp.
func swap(tmp, final string) error {
	err := os.Rename(tmp, final)
	if err == nil || !(errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY)) {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("exchange %s: %w", final, err)
	}
	// No RENAME_EXCHANGE on this filesystem: move the old one away first.
	old := tmp + ".old"
	if err := os.Rename(final, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Rename(old, final)
		return err
	}
	return os.Rename(old, tmp)
}
