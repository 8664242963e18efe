package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/md5hex"
)

// IMS's object metadata of image artifacts (helper image_upload_artifacts).
const (
	metaMD5       = "md5sum"
	metaImageName = "x-shasta-ims-image-name"
	metaImageID   = "x-shasta-ims-image-id"
	metaJobID     = "x-shasta-ims-job-id"
)

// publishImage registers the image the engine published into dir (a
// publish "dir" image directory: artifacts, sbom.spdx.json, when signed
// provenance.intoto.jsonl, and manifest.json) the way IMS's job helper
// does: it creates the image record first, uploads the artifacts under
// <image id>/ in the image bucket with IMS's metadata, then the SBOM and
// the provenance beside them (not in the manifest, as every imsbuild
// publish does), writes the manifest, links the record to it and sets the job's
// resultant_image_id. On failure it removes what it made, the record
// included, and returns the error.
func (j *jobRun) publishImage(ctx context.Context, dir, name, arch string) (id string, err error) {
	data, err := os.ReadFile(filepath.Join(dir, ims.ManifestFile))
	if err != nil {
		return "", fmt.Errorf("publish image: %w", err)
	}
	built, err := ims.ParseManifest(data)
	if err != nil {
		return "", fmt.Errorf("publish image: %w", err)
	}
	id = uuid.NewString()
	img := store.Image{ID: id, Created: timestamp(j.now()), Name: name, Arch: arch, Metadata: map[string]string{}}
	if err := j.store().Images.Put(img); err != nil {
		return "", fmt.Errorf("publish image: create record: %w", err)
	}
	bucket := j.imageBucket()
	var uploaded []string
	defer func() {
		if err == nil {
			return
		}
		// As IMS's helper: no record and no objects of a failed upload.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, key := range uploaded {
			if derr := j.blobs().Delete(cctx, bucket, key); derr != nil {
				fmt.Fprintf(j.log, "clean up %s: %v\n", key, derr)
			}
		}
		if rerr := j.store().Images.Remove(id); rerr != nil {
			fmt.Fprintf(j.log, "clean up image record %s: %v\n", id, rerr)
		}
	}()
	meta := map[string]string{metaImageName: name, metaImageID: id, metaJobID: j.job.ID}
	// Artifacts an earlier image already has are copied in S3, not uploaded.
	from := j.blobs().ArtifactSources(ctx, store.RecentManifests(j.store().Images, name, 8))
	var artifacts []map[string]any
	for _, a := range built.Artifacts {
		base := filepath.Base(a.Link.Path)
		key := id + "/" + base
		etag, err := j.uploadFile(ctx, filepath.Join(dir, base), bucket, key, a.Type, a.MD5, meta, from)
		if err != nil {
			return id, err
		}
		uploaded = append(uploaded, key)
		artifacts = append(artifacts, map[string]any{
			"link": map[string]any{"etag": etag, "path": "s3://" + bucket + "/" + key, "type": "s3"},
			"md5":  a.MD5, "type": a.Type,
		})
	}
	// The SBOM and the signed provenance before the manifest: a reader
	// that finds the manifest finds them too. An image without an SBOM (an
	// unchanged import), or without a signing key, has no such file.
	for _, side := range []struct{ name, mediaType string }{
		{ims.SBOMFile, ims.MediaTypeSPDX},
		{ims.ProvenanceFile, ims.MediaTypeDSSE},
	} {
		path := filepath.Join(dir, side.name)
		sum, err := fileMD5(path)
		switch {
		case err == nil:
			key := id + "/" + side.name
			if _, err := j.uploadFile(ctx, path, bucket, key, side.mediaType, sum, meta, nil); err != nil {
				return id, err
			}
			uploaded = append(uploaded, key)
		case !errors.Is(err, os.ErrNotExist):
			return id, fmt.Errorf("publish image: %w", err)
		}
	}
	manifest, err := manifestJSON(artifacts, j.now())
	if err != nil {
		return id, fmt.Errorf("publish image: %w", err)
	}
	key := id + "/" + ims.ManifestFile
	md5 := md5hex.Of(manifest)
	etag, err := j.blobs().Upload(ctx, bucket, key, bytes.NewReader(manifest), int64(len(manifest)), "application/json", map[string]string{metaMD5: md5})
	if err != nil {
		return id, fmt.Errorf("publish image: %w", err)
	}
	uploaded = append(uploaded, key)
	link := &store.Link{Path: "s3://" + bucket + "/" + key, Etag: etag, Type: "s3"}
	found := true
	err = j.store().Images.Update(func(tx store.Tx[store.Image]) error {
		rec, ok := tx.Get(id)
		if !ok {
			found = false
			return nil
		}
		rec.Link = link
		return tx.Put(rec)
	})
	if err == nil && !found {
		err = errors.New("the image record was deleted while the job uploaded it")
	}
	if err != nil {
		return id, fmt.Errorf("publish image: link record: %w", err)
	}
	if err := j.update(func(job *store.Job) { job.ResultantImageID = &id }); err != nil {
		return id, fmt.Errorf("publish image: set resultant_image_id: %w", err)
	}
	fmt.Fprintf(j.log, "image %s (%s): %s\n", id, name, link.Path)
	return id, nil
}

// uploadFile uploads path to bucket/key, checking on the way that its md5
// is the one the manifest says.
func (j *jobRun) uploadFile(ctx context.Context, path, bucket, key, contentType, md5 string, meta map[string]string, from blob.Sources) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("publish image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("publish image: %w", err)
	}
	m := map[string]string{metaMD5: md5}
	for k, v := range meta {
		m[k] = v
	}
	etag, copied, err := j.blobs().UploadFile(ctx, bucket, key, f, fi.Size(), md5, from, contentType, m)
	if err != nil {
		return "", fmt.Errorf("publish image: %w", err)
	}
	how := "uploaded"
	if copied {
		how = "copied in S3 from an earlier image:"
	}
	fmt.Fprintf(j.log, "%s s3://%s/%s (md5 %s)\n", how, bucket, key, md5)
	return etag, nil
}

// fileMD5 is the md5 of the file at path, read as a stream.
func fileMD5(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return md5hex.OfReader(f)
}

// manifestJSON writes a manifest as IMS's helper does: json.dump with
// sort_keys and indent 4, created as Python's str(datetime.now()).
func manifestJSON(artifacts []map[string]any, now time.Time) ([]byte, error) {
	created := now.UTC().Format("2006-01-02 15:04:05.000000")
	if now.Nanosecond()/1000 == 0 {
		created = now.UTC().Format("2006-01-02 15:04:05")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	err := enc.Encode(map[string]any{"artifacts": artifacts, "created": created, "version": ims.ManifestVersion})
	return bytes.TrimRight(buf.Bytes(), "\n"), err
}

// timestamp formats t as IMS's records do (the server's format).
func timestamp(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04:05.000000")
}
