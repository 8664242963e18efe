package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/publish/s3"
	"github.com/imsbuild/imsbuild/spec"
)

// A kiwi image is two cached sub-steps (steps.Prepare, then steps.Image
// keyed by the prepared root's digest), so a squashfs option or customize
// change never reinstalls packages.

func prepareID(s *Step) string { return s.ID + "/prepare" }

// recipeRepos returns the repositories the recipe of kiwi image s names,
// sorted by name.
func (e *Engine) recipeRepos(s *Step) []*spec.Repository {
	r := e.cfg.Recipes[s.Image.Recipe]
	var out []*spec.Repository
	for _, name := range r.Repositories {
		if rp := e.cfg.Repositories[name]; rp != nil {
			out = append(out, rp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// runPrepare makes sure the prepare sub-step of kiwi image s has a result,
// from the cache or by running op.
func (e *Engine) runPrepare(ctx context.Context, s *Step, op steps.Op) error {
	id := prepareID(s)
	start := time.Now()
	pre, err := e.preimage(ctx, op)
	if err != nil {
		return err
	}
	cached, err := e.runCached(ctx, id, pre, s.ID+".prepare.log", true, func(log io.Writer) (*cache.ActionResult, error) {
		return e.build(ctx, id, op, log)
	})
	if err != nil || cached {
		return err
	}
	// The scheduler reports the image step; the prepare sub-step reports itself.
	var size int64
	for _, o := range e.result(id).Outputs {
		size += o.Size
	}
	e.emit(Event{Step: id, Status: StatusDone, Key: e.key(id), Bytes: size, DurationMS: time.Since(start).Milliseconds(), Remote: e.opts.Executor != nil})
	return nil
}

// DefaultKiwiCacheDir holds kiwi's shared caches (repository metadata and
// downloaded packages), kept across builds so a second recipe downloads only
// what is new (steps.DefaultKiwiCacheDir).
const DefaultKiwiCacheDir = steps.DefaultKiwiCacheDir

// DefaultBootstrapCacheDir keeps debootstrap results across builds (see
// Options.BootstrapCacheDir).
const DefaultBootstrapCacheDir = DefaultKiwiCacheDir + "/bootstrap"

// recipeSource returns a local path of r's source: the source itself, or an
// IMS recipe.tgz in S3 (s3://ims/recipes/<id>/recipe.tgz) downloaded, md5
// checked, once per build into the state dir.
func (e *Engine) recipeSource(ctx context.Context, r *spec.Recipe) (string, error) {
	if !strings.HasPrefix(r.Source, "s3://") {
		return r.Source, nil
	}
	return e.once("recipe:"+r.Source, func() (string, error) {
		dir := filepath.Join(e.opts.StateDir, "recipes")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		path := filepath.Join(dir, digestOf(r.Source)[7:19]+".tgz")
		if _, err := s3.Download(ctx, s3.Config{}, r.Source, path, ""); err != nil {
			return "", fmt.Errorf("recipe %s: %w", r.Name, err)
		}
		return path, nil
	})
}
