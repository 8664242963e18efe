package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/dir"
	"github.com/imsbuild/imsbuild/publish/imsapi"
	"github.com/imsbuild/imsbuild/publish/oci"
	"github.com/imsbuild/imsbuild/publish/s3"
	"github.com/imsbuild/imsbuild/spec"
)

// publishImage describes the built image of step id for publishers.
func (e *Engine) publishImage(ctx context.Context, id string) (publish.Image, error) {
	s := e.graph.Step(id)
	r := e.result(id)
	if s == nil || r == nil {
		return publish.Image{}, fmt.Errorf("%s has not been built", id)
	}
	var digests []string
	for _, name := range ims.ArtifactNames() { // IMS's order: the id depends on it
		if o, ok := r.Outputs[name]; ok {
			digests = append(digests, name+"="+string(o.Digest))
		}
	}
	created, err := e.created(ctx, r)
	if err != nil {
		return publish.Image{}, fmt.Errorf("%s: %w", id, err)
	}
	outs := PublishArtifacts(r.Outputs)
	if p, ok := e.provenanceOf(id); ok {
		outs[ims.ProvenanceFile] = PublishArtifacts(map[string]cache.Output{ims.ProvenanceFile: p})[ims.ProvenanceFile]
	}
	return publish.Image{
		Label:   s.Image.Label,
		Name:    s.Image.Name,
		Arch:    s.Image.Arch,
		ID:      ims.ImageID(s.Image.Name, digests...),
		Key:     e.key(id),
		Created: created,
		Outputs: outs,
	}, nil
}

// created is the creation time of image result r in its manifests: its
// epoch, as the rootfs records it (SOURCE_DATE_EPOCH, else the epoch of
// the image's source: see steps.Image), so that two builds of the same
// inputs publish the same manifest. A result without a rootfs (none is
// built so) keeps the time it was built.
func (e *Engine) created(ctx context.Context, r *cache.ActionResult) (time.Time, error) {
	if epoch, ok := e.sourceDateEpoch(); ok {
		return time.Unix(epoch, 0).UTC(), nil
	}
	out, ok := r.Outputs[ims.ArtifactRootfs]
	if !ok {
		return r.Created, nil
	}
	epoch, err := steps.BlobEpoch(ctx, e.store, out.Digest)
	if errors.Is(err, steps.ErrNotSquashfs) {
		return r.Created, nil // a published image imported as it is
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(epoch, 0).UTC(), nil
}

func (e *Engine) runPublish(ctx context.Context, s *Step) error {
	p := s.Publish
	e.emit(Event{Step: s.ID, Status: StatusStarted})
	var images []publish.Image
	for _, d := range s.Deps {
		if d.Kind == KindPublish {
			continue
		}
		img, err := e.publishImage(ctx, d.ID)
		if err != nil {
			return err
		}
		images = append(images, img)
	}
	if len(images) > 0 {
		pub, err := e.publisher(ctx, p, images)
		if err != nil {
			return err
		}
		if err := pub.Publish(ctx, PublishBlobs(e.store), images); err != nil {
			return err
		}
	}
	switch p.Kind {
	case "s3":
		if err := e.publishRecipesS3(ctx, p); err != nil {
			return err
		}
	case "ims":
		if len(p.Recipes) > 0 {
			client, err := imsClient(p)
			if err != nil {
				return err
			}
			if err := e.registerRecipes(ctx, p, client); err != nil {
				return err
			}
		}
	}
	for _, img := range images {
		line := fmt.Sprintf("%s → %s (id %s)", img.Label, destination(p, img.Label), img.ID)
		if p.Kind == "ims" {
			line = fmt.Sprintf("%s → %s", img.Label, destination(p, img.Label)) // IMS assigns the id
		}
		e.emit(Event{Step: s.ID, Status: StatusLog, Line: line})
	}
	return nil
}

// publisher returns the backend of a publish block.
func (e *Engine) publisher(ctx context.Context, p *spec.Publish, images []publish.Image) (publish.Publisher, error) {
	switch p.Kind {
	case "dir":
		pub := dir.New(p.Path)
		pub.StatCache = e.opts.StatCache // an unchanged published image is not read again
		return pub, nil
	case "s3":
		return s3.New(ctx, s3Config(p))
	case "oci":
		// The repository may name the image (registry/hpc/${image.name}),
		// so each image gets a publisher of its own.
		var pubs multiPublisher
		for _, img := range images {
			var opts []oci.Option
			if e.opts.Signer != nil {
				// cosign wants the image manifest as a subject of the
				// attestation, so the publisher signs it again, and signs
				// the manifest (cosign verify).
				opts = append(opts, oci.WithSigner(e.opts.Signer))
			}
			pub, err := oci.New(oci.Config{Repository: destination(p, img.Label), Tags: p.Tags, Insecure: p.Insecure}, opts...)
			if err != nil {
				return nil, err
			}
			pubs = append(pubs, labeled{img.Label, pub})
		}
		return pubs, nil
	case "ims":
		client, err := imsClient(p)
		if err != nil {
			return nil, err
		}
		return imsapi.NewPublisher(client, e.imsStore), nil
	}
	// spec rejects any other kind, so this is a bug.
	return nil, fmt.Errorf("publish %q: unknown kind", p.Kind)
}

// imsStore is where publish "ims" puts img for IMS, under the id of its
// IMS record: the bucket of the first s3 publish of the image in this build,
// else the folder of the first dir publish (which IMS can read only where an
// S3 endpoint serves it as the bucket).
func (e *Engine) imsStore(ctx context.Context, img publish.Image) (imsapi.Store, error) {
	for _, kind := range []string{"s3", "dir"} {
		for _, p := range e.cfg.Publishes {
			if p.Kind != kind || !slices.Contains(p.Images, img.Label) {
				continue
			}
			if kind == "dir" {
				pub := dir.New(p.Path)
				pub.StatCache = e.opts.StatCache
				return imsapi.DirStore(pub), nil
			}
			pub, err := s3.New(ctx, s3Config(p))
			if err != nil {
				return nil, err
			}
			return imsapi.S3Store(pub), nil
		}
	}
	return nil, fmt.Errorf("image %s is not published to s3 or a dir by this build, so IMS has no bucket to read it from", img.Label)
}

// destination names where a publish block puts an image, for messages.
func destination(p *spec.Publish, label string) string {
	switch p.Kind {
	case "dir":
		return p.Path
	case "s3":
		return "s3://" + p.Bucket + "/" + p.Prefix
	case "oci":
		if r, ok := p.ImageRepos[label]; ok {
			return r
		}
		return p.Repository
	}
	return p.Endpoint
}

type labeled struct {
	label string
	pub   publish.Publisher
}

// multiPublisher sends each image to the publisher made for it.
type multiPublisher []labeled

func (m multiPublisher) Publish(ctx context.Context, blobs publish.Blobs, images []publish.Image) error {
	for _, img := range images {
		for _, l := range m {
			if l.label == img.Label {
				if err := l.pub.Publish(ctx, blobs, []publish.Image{img}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func imsClient(p *spec.Publish) (*imsapi.Client, error) {
	return imsapi.New(imsapi.Config{Endpoint: p.Endpoint, Token: p.Token, CABundle: p.CABundle})
}

func s3Config(p *spec.Publish) s3.Config {
	return s3.Config{
		Config: s3client.Config{Endpoint: p.Endpoint, Region: p.Region, PathStyle: p.PathStyle, CABundle: p.CABundle},
		Bucket: p.Bucket, Prefix: p.Prefix,
	}
}

// PublishBlobs adapts a cache store to what publishers read: its errors
// match publish.ErrNotFound and publish.ErrCorrupt as well as the cache's,
// and Path finds the local blob file of a store that has one (cache/local,
// and cache/tiered for a blob downloaded already), so an OCI push sends it
// without a copy through user space.
func PublishBlobs(store cache.Store) publish.Blobs { return storeBlobs{store} }

// PublishArtifacts converts step outputs to publish artifacts.
func PublishArtifacts(outs map[string]cache.Output) map[string]publish.Artifact {
	res := make(map[string]publish.Artifact, len(outs))
	for name, o := range outs {
		res[name] = publish.Artifact{Digest: digest.Digest(o.Digest), Size: o.Size, MediaType: o.MediaType, MD5: o.MD5}
	}
	return res
}

type storeBlobs struct{ store cache.Store }

// blobFiler is a store whose blobs are plain files: cache/local, and
// cache/tiered for the blobs of its local cache.
type blobFiler interface {
	BlobPath(cache.Digest) string
}

func (b storeBlobs) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	rc, err := b.store.Open(ctx, cache.Digest(d))
	if err != nil {
		return nil, publishError(err)
	}
	return blobReader{rc}, nil
}

func (b storeBlobs) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	n, err := b.store.Stat(ctx, cache.Digest(d))
	return n, publishError(err)
}

func (b storeBlobs) Path(ctx context.Context, d digest.Digest) (string, bool) {
	f, ok := b.store.(blobFiler)
	if !ok || !cache.Digest(d).Valid() {
		return "", false
	}
	p := f.BlobPath(cache.Digest(d))
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return p, true
}

// blobReader translates the error of a blob found corrupt at EOF.
type blobReader struct{ io.ReadCloser }

func (r blobReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = publishError(err)
	}
	return n, err
}

// publishError makes a cache error match the publish error of its kind too,
// keeping its message.
func publishError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cache.ErrCorrupt):
		return kindError{err, publish.ErrCorrupt}
	case errors.Is(err, cache.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return kindError{err, publish.ErrNotFound}
	}
	return err
}

type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }
