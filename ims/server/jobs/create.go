package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/publish/dir"
	"github.com/imsbuild/imsbuild/spec"
)

// The labels of the build a create job runs: fixed, so that nothing of
// the request becomes a name in the build, and so that a second job of the
// same recipe has the same keys (a cache hit).
const (
	createRecipe  = "recipe"
	createImage   = "image"
	createPublish = "job"
	createOut     = "out" // the dir publish's directory in the build directory
)

// runCreate runs a create job (SPEC §5): fetch and render the recipe,
// wait for its repositories, build it with kiwi through the engine and
// the server's cache, pack it, and publish it under a new image record.
func runCreate(ctx context.Context, j *jobRun) error {
	rec, ok := j.store().Recipes.Get(j.job.ArtifactID)
	if !ok {
		return fmt.Errorf("recipe %s: no such recipe record", j.job.ArtifactID)
	}
	key, ok := j.store().PublicKeys.Get(j.job.PublicKeyID)
	if !ok && j.job.EnableDebug {
		return fmt.Errorf("public key %s: no such record", j.job.PublicKeyID)
	}
	work, release, err := j.workDir()
	if err != nil {
		return err
	}
	defer release()

	if err := j.setStatus("fetching_recipe"); err != nil {
		return err
	}
	// The build directory holds only the build's inputs (the recipe, the
	// CA file): a remote step gets it whole, without the recipe archive.
	buildDir := filepath.Join(work, "build")
	recipeDir := filepath.Join(buildDir, "recipe")
	if err := fetchRecipe(ctx, j.blobs(), rec, work, recipeDir, j.log); err != nil {
		return err
	}
	if err := renderRecipe(recipeDir, rec.TemplateDictionary, j.log); err != nil {
		return err
	}
	if err := j.setStatus("waiting_for_repos"); err != nil {
		return err
	}
	if err := waitForRepos(ctx, http.DefaultClient, recipeDir, j.log); err != nil {
		return err
	}
	if err := j.setStatus("building_image"); err != nil {
		return err
	}
	out := filepath.Join(buildDir, createOut)
	// With an executor the steps build elsewhere, from the build as HCL;
	// the debug shell of enable_debug opens in the failed step's pod with
	// an executor that lets people in there, else in this process (the
	// whole job builds here).
	remote := j.r.cfg.Executor != nil && (!j.job.EnableDebug || j.r.sshInPod(j.job))
	var cfg *spec.Config
	if remote {
		if cfg, err = loadCreateBuild(ctx, j.job, rec, buildDir, work, j.caCerts()); err != nil {
			return fmt.Errorf("create job: %w", err)
		}
		cfg.Settings.Cache.Dir = j.r.cfg.CacheDir
	} else {
		cfg = createConfig(j.job, rec, recipeDir, out, j.r.cfg.CacheDir, j.caCerts())
		// The sidecar copies the CA to /etc/cray/ca before packing (SPEC
		// §5), besides the trust store that CACertificates fills during
		// prepare.
		if err := addCA(cfg.Images[createImage], j.caCerts(), buildDir); err != nil {
			return fmt.Errorf("create job: %w", err)
		}
	}
	var mu sync.Mutex
	packaging := false
	events := func(ev engine.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Step == "image."+createImage && (ev.Status == engine.StatusStarted || ev.Status == engine.StatusCached) && !packaging:
			packaging = true
			_ = j.setStatus("packaging_artifacts")
		case ev.Status == engine.StatusWaiting && ev.SSH != nil:
			// The debug shell of a failed build (enable_debug), on the
			// port connection_info named since the POST, or in the
			// failed step's pod behind a Service, which the record then
			// names. The container's status stays pending, as in IMS
			// (SPEC §2.5).
			if ev.SSH.Service != "" {
				if err := j.recordService(ev.SSH); err != nil {
					j.r.log.Error("record the debug shell's service", "job", j.job.ID, "err", err)
				}
			}
			_ = j.setStatus("waiting_on_user")
		}
	}
	e, err := j.newEngine(cfg, work, events, func(o *engine.Options) {
		if remote {
			j.remote(o)
		}
		if j.job.EnableDebug {
			o.DebugOnFailure = true
			// IMS's layout: the failed root at /mnt/image/build/image-root.
			o.IMSDebugLayout = true
			o.PublicKeys = []string{key.PublicKey}
			if !remote {
				o.SSHListen = j.sshListen()
			}
		}
	})
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	if err := e.Build(ctx, nil); err != nil {
		return errors.New(e.Redact(err.Error()))
	}
	if !packaging {
		if err := j.setStatus("packaging_artifacts"); err != nil {
			return err
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(out, dir.Bucket, "*", "manifest.json"))
	if len(dirs) != 1 {
		return fmt.Errorf("create job: the build published %d images, want 1", len(dirs))
	}
	_, err = j.publishImage(ctx, filepath.Dir(dirs[0]), j.job.ImageRootArchiveName, j.job.Arch)
	return err
}

// createConfig is the build of a create job: the recipe in recipeDir
// (rendered already, so the engine renders nothing), one image from it
// packed as IMS packs (mksquashfs' defaults: gzip, 128 KiB blocks), with
// the job's kernel and initrd names and the CA certificates, published
// into out. It is built in Go, not from HCL text, so that no value of the
// request is ever parsed.
func createConfig(job store.Job, rec store.Recipe, recipeDir, out, cacheDir string, caCerts []string) *spec.Config {
	arch := job.Arch
	if arch == "" {
		arch = "x86_64"
	}
	return &spec.Config{
		Dir:          filepath.Dir(recipeDir),
		Settings:     spec.Settings{Cache: spec.CacheSettings{Dir: cacheDir}},
		Repositories: map[string]*spec.Repository{},
		Recipes: map[string]*spec.Recipe{createRecipe: {
			Name: createRecipe, Source: recipeDir, Type: "kiwi-ng", Arch: arch,
			LinuxDistribution: rec.LinuxDistribution, Template: map[string]string{},
		}},
		Images: map[string]*spec.Image{createImage: {
			Label: createImage, Name: job.ImageRootArchiveName, Arch: arch, Recipe: createRecipe,
			KernelFileName: job.KernelFileName, InitrdFileName: job.InitrdFileName,
			CACertificates: caCerts, DebugOnFailure: job.EnableDebug,
			Squashfs: spec.Squashfs{Compression: "gzip", BlockSize: 128 << 10},
		}},
		Publishes: []*spec.Publish{{Kind: "dir", Name: createPublish, Images: []string{createImage}, Path: out}},
	}
}
