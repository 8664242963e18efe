package s3

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"time"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/ctxio"
	"github.com/imsbuild/imsbuild/publish/recipe"
)

// RecipeFile is the object name of a recipe archive.
const RecipeFile = "recipe.tgz"

// RecipeUpload is a recipe archive to publish and what its IMS record says.
type RecipeUpload struct {
	Name              string
	Arch              string            // x86_64 | aarch64
	LinuxDistribution string            // IMS linux_distribution
	RequireDKMS       bool              // IMS require_dkms
	RecipeType        string            // kiwi-ng | packer
	Template          map[string]string // IMS template_dictionary
	TGZPath           string            // the recipe.tgz (recipe.Archive writes one)
	ID                string            // "" = recipe.RecipeID(Name, sha256 of the archive)
}

// RecipeKey returns the object key of recipe id's archive in the recipe
// bucket: recipes/<id>/recipe.tgz.
func RecipeKey(id string) string { return "recipes/" + id + "/" + RecipeFile }

// PublishRecipe uploads rec's archive to s3://<RecipeBucket>/recipes/<id>/recipe.tgz
// with its md5 and sha256 as metadata, unless that object already holds the
// same content, then checks it with a HEAD. It returns the IMS link of the
// object, with the ETag the bucket reports. The archive is read twice (to
// hash it, then to upload it), never held in memory.
func (p *Publisher) PublishRecipe(ctx context.Context, rec RecipeUpload) (ims.Link, error) {
	want, err := hashFile(ctx, rec.TGZPath)
	if err != nil {
		return ims.Link{}, fmt.Errorf("publish recipe %s: %w", rec.Name, err)
	}
	id := rec.ID
	if id == "" {
		if rec.Name == "" {
			return ims.Link{}, fmt.Errorf("publish recipe %s: no name and no id", rec.TGZPath)
		}
		id = recipe.RecipeID(rec.Name, want.sha256)
	}
	bucket, key := p.cfg.RecipeBucket, RecipeKey(id)
	have, err := p.headIn(ctx, bucket, key)
	if err != nil {
		return ims.Link{}, fmt.Errorf("publish recipe %s: %w", rec.Name, err)
	}
	if have == nil || !have.matches(want) {
		open := func(context.Context) (io.ReadCloser, error) { return os.Open(rec.TGZPath) }
		if have, err = p.putFrom(ctx, bucket, key, ims.MediaTypeRecipe, want, open); err != nil {
			return ims.Link{}, fmt.Errorf("publish recipe %s: %w", rec.Name, err)
		}
	}
	return ims.Link{Path: "s3://" + bucket + "/" + key, Etag: have.etag, Type: "s3"}, nil
}

// Record returns the IMS RecipeRecord of rec published at link (as
// PublishRecipe returned it), created at created. The id is the one in the
// link's path; the template dictionary is sorted by key.
func (r RecipeUpload) Record(link ims.Link, created time.Time) ims.RecipeRecord {
	rec := ims.RecipeRecord{
		ID:                path.Base(path.Dir(link.Path)),
		Created:           created.UTC().Format(time.RFC3339),
		Name:              r.Name,
		RecipeType:        r.RecipeType,
		LinuxDistribution: r.LinuxDistribution,
		RequireDKMS:       r.RequireDKMS,
		Link:              &link,
		Arch:              r.Arch,
	}
	for _, k := range slices.Sorted(maps.Keys(r.Template)) {
		rec.TemplateDictionary = append(rec.TemplateDictionary, ims.TemplateEntry{Key: k, Value: r.Template[k]})
	}
	return rec
}

// hashFile returns the size, md5 and sha256 of a file.
func hashFile(ctx context.Context, name string) (remoteObject, error) {
	f, err := os.Open(name)
	if err != nil {
		return remoteObject{}, err
	}
	defer f.Close()
	mh, sh := md5.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(mh, sh), ctxio.Reader(ctx, f))
	if err != nil {
		return remoteObject{}, fmt.Errorf("read %s: %w", name, err)
	}
	return remoteObject{size: n, md5: hex.EncodeToString(mh.Sum(nil)), sha256: hex.EncodeToString(sh.Sum(nil))}, nil
}
