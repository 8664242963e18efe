package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imsbuild/imsbuild/publish/imsapi"
	"github.com/imsbuild/imsbuild/publish/recipe"
	"github.com/imsbuild/imsbuild/publish/s3"
	"github.com/imsbuild/imsbuild/spec"
)

// recipeUpload describes recipe r for publishing, its archive at tgz.
func recipeUpload(r *spec.Recipe, tgz string) s3.RecipeUpload {
	return s3.RecipeUpload{Name: r.Name, Arch: r.Arch, LinuxDistribution: r.LinuxDistribution,
		RequireDKMS: r.RequireDKMS, RecipeType: r.Type, Template: r.Template, TGZPath: tgz}
}

// publishRecipesS3 uploads the recipes of publish block p as IMS recipe.tgz
// archives (bucket ims, recipes/<id>/recipe.tgz) and remembers their links
// for an IMS registration later in the build.
func (e *Engine) publishRecipesS3(ctx context.Context, p *spec.Publish) error {
	if len(p.Recipes) == 0 {
		return nil
	}
	pub, err := s3.New(ctx, s3Config(p))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(e.opts.WorkDir, "recipes-")
	if err != nil {
		return err
	}
	defer removeAll(e.opts.Logger, work)
	for _, name := range p.Recipes {
		r := e.cfg.Recipes[name]
		tgz, err := recipeArchive(ctx, r, work)
		if err != nil {
			return err
		}
		link, err := pub.PublishRecipe(ctx, recipeUpload(r, tgz))
		if err != nil {
			return fmt.Errorf("publish recipe %s: %w", name, err)
		}
		e.mu.Lock()
		e.recipeLinks[name] = link
		e.mu.Unlock()
	}
	return nil
}

// recipeArchive returns a recipe.tgz of r: its source when that is an
// archive already, else a reproducible archive of the directory.
func recipeArchive(ctx context.Context, r *spec.Recipe, work string) (string, error) {
	st, err := os.Stat(r.Source)
	if err != nil {
		return "", fmt.Errorf("recipe %s: %w", r.Name, err)
	}
	if !st.IsDir() {
		return r.Source, nil
	}
	tgz := filepath.Join(work, r.Name+".tgz")
	f, err := os.Create(tgz)
	if err != nil {
		return "", err
	}
	if err := recipe.Archive(ctx, r.Source, f); err != nil {
		f.Close()
		return "", fmt.Errorf("archive recipe %s: %w", r.Name, err)
	}
	return tgz, f.Close()
}

// registerRecipes registers the recipes of an ims publish block, linked to
// the archives an s3 publish of this build uploaded.
func (e *Engine) registerRecipes(ctx context.Context, p *spec.Publish, client *imsapi.Client) error {
	for _, name := range p.Recipes {
		e.mu.Lock()
		link, ok := e.recipeLinks[name]
		e.mu.Unlock()
		if !ok {
			return fmt.Errorf("register recipe %s: no publish \"s3\" of this build uploads it (add recipes = [recipe.%s] to one)", name, name)
		}
		rec := recipeUpload(e.cfg.Recipes[name], "").Record(link, e.opts.Now())
		if _, err := client.RegisterRecipe(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}
