package steps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/lockfile"
)

// A cheap second recipe. A prepare that misses the cache looks for the
// prepared root of a recipe that differs from its own only by added image
// packages (the same rendered description otherwise, config.sh and the
// overlay included; the same repositories with the same metadata; the
// same arch, profiles, kiwi, epoch and environment: deriveFamily) and,
// when it finds one, derives its root from it: kiwi-ng system prepare
// --allow-existing-root of the new description on the unpacked base root.
// kiwi then skips the bootstrap (apt-get is in the root) and does the rest
// of a prepare: post_bootstrap.sh, apt-get install of the image packages
// (only the added ones and what they need are new), the overlay, users,
// config.sh. The scripts run again, over their own earlier result, after
// the new packages are in: a fresh build runs config.sh after every
// package too, and a script that is not idempotent (one that appends to a
// file, say) makes a derived root that a fresh build would not. Deriving
// is opt-in (`imsbuild build --derive`): a derived root is not
// byte-identical to a fresh one (its initrd), and which base a runner has
// depends on what it built before.
//
// Before anything is stored the derived root's package set (name, version,
// arch) must equal what a fresh build installs. That is modelled by
// kiwi.SimulateApt (debootstrap's set and kiwi's apt-get in a scratch apt),
// and the model is trusted only where it is right: its answer for the base
// recipe must equal the base root's real package list, and its answer for
// the new recipe must then equal the derived root's. Anything else (the
// model wrong for this recipe, a package the new recipe removes, other
// repository metadata, a failed kiwi) drops the derived root and builds
// fresh, saying why in the log; nothing partial is stored.
//
// A derived root is not byte-identical to a fresh one (the same packages,
// the files of a different installation order). Its result records that
// it is derived (DerivationOutput: the base root, its package list and the
// added packages), and a rebuild that finds the same base (`build --check`
// here, another runner sharing the index and the base) derives the same
// bytes. The index of bases is a small file per family under the kiwi
// cache directory (deriveIndexDir), so it is per machine: with a remote
// cache the base's blobs are shared, but another runner (a Kubernetes
// step pod) has no index entry and builds fresh.

// DerivationOutput names, in a derived Prepare's outputs, the record of
// what it was derived from (derivationRecord as JSON).
const DerivationOutput = "derivation"

// BootstrapStatusOutput names, in a Prepare's outputs, the dpkg status of
// the bootstrap root it started from, when the bootstrap cache's shim made
// or restored it: what a derivation's model starts from (kept as an output
// so that the cache keeps it as long as the root).
const BootstrapStatusOutput = "bootstrap-status"

const derivationMediaType = "application/vnd.imsbuild.kiwi-derivation+json"

// deriveKeep bounds the bases kept per family (the newest).
const deriveKeep = 8

// derivationRecord is DerivationOutput's content.
type derivationRecord struct {
	BasePreparedRoot cache.Digest `json:"base_prepared_root"`
	BasePackages     cache.Digest `json:"base_packages"`
	AddedPackages    []string     `json:"added_packages"`
}

// deriveEntry is a prepared root in the index, a possible base.
type deriveEntry struct {
	Prepared cache.Output `json:"prepared"`
	Packages cache.Output `json:"packages"`
	// BootstrapStatus is the dpkg status of the bootstrap root its fresh
	// prepare started from (a derived root's base's): the model's start.
	BootstrapStatus cache.Output      `json:"bootstrap_status"`
	ImagePackages   []string          `json:"image_packages"` // kiwi.Family.Packages
	Repositories    map[string]string `json:"repositories"`   // metadata digests
	Created         time.Time         `json:"created"`
}

// deriveIndexDir is where the index of bases lives under kiwi's cache
// directory base.
func deriveIndexDir(base string) string {
	if base == "" {
		base = DefaultKiwiCacheDir
	}
	return filepath.Join(base, "derive")
}

// deriveFamily digests everything of a prepare but its image packages and
// repository metadata: the description's family, the recipe's key
// attributes, the kiwi that runs, the epoch and the environment.
func (o *Prepare) deriveFamily(ctx context.Context, fam *kiwi.Family, epoch int64, environ []string) (string, error) {
	tools := o.tools // what Key found, when it ran on this op
	if tools == nil {
		tools = map[string]string{"builder_image": o.Recipe.BuilderImage}
		if o.Recipe.BuilderImage == "" {
			v, err := kiwi.ToolVersion(ctx)
			if err != nil {
				return "", err
			}
			tools = map[string]string{"kiwi-ng": v}
		}
	}
	b, err := json.Marshal(struct {
		Description string
		Attrs       any
		Tools       map[string]string
		Epoch       int64
		Environ     []string
	}{fam.Digest, recipeAttrs(o.Recipe, o.Repositories), tools, epoch, environ})
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// readDeriveIndex returns the entries of family in dir, none when there
// is no index yet or it cannot be read (derivation is only a shortcut).
func readDeriveIndex(dir, family string) []deriveEntry {
	b, err := os.ReadFile(filepath.Join(dir, family+".json"))
	if err != nil {
		return nil
	}
	var es []deriveEntry
	if json.Unmarshal(b, &es) != nil {
		return nil
	}
	return es
}

// recordDeriveBase adds e to family's index in dir (replacing an entry of
// the same root), keeping the newest deriveKeep. Entries of one package
// list stay side by side: each names blobs of its own cache (another
// cache directory on this machine, a test's), and pickBase takes one that
// the building store has.
func recordDeriveBase(dir, family string, e deriveEntry) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lock := flock.New(filepath.Join(dir, family+".lock"))
	if err := lock.Lock(); err != nil {
		return err
	}
	defer lock.Unlock()
	es := slices.DeleteFunc(readDeriveIndex(dir, family), func(x deriveEntry) bool {
		return x.Prepared.Digest == e.Prepared.Digest
	})
	es = append(es, e)
	if len(es) > deriveKeep {
		es = es[len(es)-deriveKeep:]
	}
	b, err := json.Marshal(es)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, family+".json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, family+".json"))
}

// pickBase returns the closest base among es for a recipe of image
// packages want and repository metadata repos: a strict subset of want
// (most packages first, then the newest) whose metadata digests are the
// same and whose blobs the store has; ok false when none is.
func pickBase(ctx context.Context, store cache.Store, es []deriveEntry, want []string, repos map[string]string) (deriveEntry, bool) {
	slices.SortStableFunc(es, func(a, b deriveEntry) int {
		if c := len(b.ImagePackages) - len(a.ImagePackages); c != 0 {
			return c
		}
		return b.Created.Compare(a.Created)
	})
	for _, e := range es {
		if len(e.ImagePackages) >= len(want) || !subset(e.ImagePackages, want) || !equalMaps(e.Repositories, repos) {
			continue
		}
		if _, err := store.Stat(ctx, e.Prepared.Digest); err != nil {
			continue
		}
		if _, err := store.Stat(ctx, e.Packages.Digest); err != nil {
			continue
		}
		if _, err := store.Stat(ctx, e.BootstrapStatus.Digest); err != nil {
			continue
		}
		return e, true
	}
	return deriveEntry{}, false
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// added returns the packages of want not in base, as names.
func added(base, want []string) []string {
	var out []string
	for _, p := range want {
		if !slices.Contains(base, p) {
			out = append(out, kiwi.PackageName(p))
		}
	}
	return out
}

// packageSet is a package list as sorted "name version arch" lines.
func packageSet(ps []lockfile.Package) []string {
	sims := make([]kiwi.SimPackage, len(ps))
	for i, p := range ps {
		sims[i] = kiwi.SimPackage{Name: p.Name, Version: p.Version, Arch: p.Arch}
	}
	return simSet(sims)
}

// simSet is packageSet of a simulated package list.
func simSet(ps []kiwi.SimPackage) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name + " " + p.Version + " " + p.Arch
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// setDiff describes how got differs from want, the first few lines of it.
func setDiff(got, want []string) string {
	var lines []string
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			lines = append(lines, "missing "+w)
		}
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			lines = append(lines, "extra "+g)
		}
	}
	if len(lines) > 10 {
		lines = append(lines[:10], fmt.Sprintf("… %d more", len(lines)-10))
	}
	return strings.Join(lines, "; ")
}

// maxStatusSize bounds a bootstrap root's dpkg status read back.
const maxStatusSize = 16 << 20

const statusMediaType = "application/vnd.imsbuild.dpkg-status"

// readBlob reads the blob of o, at most max bytes.
func readBlob(ctx context.Context, store cache.Store, o cache.Output, max int64) ([]byte, error) {
	if o.Size > max {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", o.Digest, o.Size, max)
	}
	rc, err := store.Open(ctx, o.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than %d bytes", o.Digest, max)
	}
	return b, nil
}

// storeStatus stores the bootstrap status file at path, if there is one.
func storeStatus(ctx context.Context, store cache.Store, path string) (cache.Output, bool, error) {
	if _, err := os.Stat(path); err != nil {
		return cache.Output{}, false, nil
	}
	d, n, err := store.PutFile(ctx, path)
	if err != nil {
		return cache.Output{}, false, fmt.Errorf("store bootstrap status: %w", err)
	}
	return cache.Output{Digest: d, Size: n, MediaType: statusMediaType}, true, nil
}

// DerivationBase reads the base prepared root named by a DerivationOutput.
func DerivationBase(ctx context.Context, store cache.Store, o cache.Output) (cache.Digest, error) {
	b, err := readBlob(ctx, store, o, 1<<20)
	if err != nil {
		return "", err
	}
	var rec derivationRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return "", fmt.Errorf("derivation record %s: %w", o.Digest, err)
	}
	return rec.BasePreparedRoot, nil
}

// storeDerivation stores rec as DerivationOutput.
func storeDerivation(ctx context.Context, store cache.Store, rec derivationRecord) (cache.Output, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return cache.Output{}, err
	}
	d, n, err := store.Put(ctx, bytes.NewReader(b), "")
	if err != nil {
		return cache.Output{}, fmt.Errorf("store derivation record: %w", err)
	}
	return cache.Output{Digest: d, Size: n, MediaType: derivationMediaType}, nil
}

// derivePlan is a derivation chosen before kiwi runs: the base and the
// package set a fresh build of the new recipe would have.
type derivePlan struct {
	base     deriveEntry
	added    []string
	basePkgs *lockfile.Recipe
	// model waits for the model of a fresh build (running meanwhile);
	// Build calls it before it returns in any case.
	model func() modelResult
}

// planDerive looks for a base of the prepare in desc and checks the
// model of a fresh build against it; nil, having logged why when there
// was a candidate, means build fresh.
func (o *Prepare) planDerive(ctx context.Context, env Env, desc, family string, fam *kiwi.Family, repos map[string]string, proxy string) *derivePlan {
	log := env.Log
	dir := deriveIndexDir(o.KiwiCacheDir)
	base, ok := pickBase(ctx, env.Store, readDeriveIndex(dir, family), fam.Packages, repos)
	if !ok {
		return nil
	}
	add := added(base.ImagePackages, fam.Packages)
	if err := kiwi.CheckSimulate(desc, o.Recipe.Profiles, o.Recipe.Arch); err != nil {
		// The derived root could not be checked.
		fmt.Fprintf(log, "derive: not derived from base %s, building fresh: %v\n", base.Prepared.Digest, err)
		return nil
	}
	fmt.Fprintf(log, "derive: candidate base %s (%d image packages; this recipe adds %s)\n", base.Prepared.Digest, len(base.ImagePackages), strings.Join(add, " "))
	basePkgs, err := ReadPackages(ctx, env.Store, &cache.ActionResult{Outputs: map[string]cache.Output{PackagesOutput: base.Packages}})
	if err != nil {
		fmt.Fprintf(log, "derive: not derived, building fresh: base package list: %v\n", err)
		return nil
	}
	drop := map[string]bool{}
	for _, p := range add {
		drop[p] = true
	}
	status, err := readBlob(ctx, env.Store, base.BootstrapStatus, maxStatusSize)
	if err != nil {
		fmt.Fprintf(log, "derive: not derived, building fresh: bootstrap status: %v\n", err)
		return nil
	}
	// The model runs while kiwi does; verify waits for it.
	ch := make(chan modelResult, 1)
	go func() {
		start := time.Now()
		sims, err := kiwi.SimulateApt(ctx, desc, o.Recipe.Profiles, o.Recipe.Arch, proxy, filepath.Join(env.Work, "simulate"), status, drop, nil)
		ch <- modelResult{sims: sims, err: err, took: time.Since(start)}
	}()
	return &derivePlan{base: base, added: add, basePkgs: basePkgs, model: sync.OnceValue(func() modelResult { return <-ch })}
}

// modelResult is what kiwi.SimulateApt said: for the base, for the new recipe.
type modelResult struct {
	sims [][]kiwi.SimPackage
	err  error
	took time.Duration
}

// unpackBase restores the base's prepared root into root.
func (p *derivePlan) unpackBase(ctx context.Context, env Env, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if err := unpack(ctx, env.Store, p.base.Prepared.Digest, env.Work, root); err != nil {
		return err
	}
	return activateTriggers(ctx, root, env.Log)
}

// activateTriggers makes every explicit dpkg trigger that a package in
// root is interested in pending (update-initramfs, ldconfig,
// update-ca-certificates…), so that the apt-get of the derivation
// processes them at its end. A fresh build's one apt-get processes, after
// its last package, every trigger any of its packages activated, and some
// handlers read the whole root: an initramfs holds whatever tools of the
// root its generator wants (dracut takes less, say, when it is there).
// The base's were made without the packages added now, which need not
// activate them (less does not rebuild the initrd, and would be missing
// from it). Processing them again, with the final package set and before
// the overlay and config.sh, as a fresh build does, makes them what a
// fresh build makes. File triggers are left alone: dpkg activates them
// whenever a package adds files below their paths, which is what their
// handlers read. dpkg-trigger of the host writes the root's dpkg database
// only (no program of the root runs here).
func activateTriggers(ctx context.Context, root string, log io.Writer) error {
	admin := filepath.Join(root, "var/lib/dpkg")
	ents, err := os.ReadDir(filepath.Join(admin, "triggers"))
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		switch n := e.Name(); {
		case n == "File" || n == "Lock" || n == "Unincorp" || strings.HasPrefix(n, "."):
		case e.Type().IsRegular():
			names = append(names, n)
		}
	}
	for _, n := range names {
		cmd := exec.CommandContext(ctx, "dpkg-trigger", "--admindir="+admin, "--no-await", "--", n)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-trigger %s: %v: %s", n, err, strings.TrimSpace(string(out)))
		}
	}
	fmt.Fprintf(log, "derive: dpkg triggers %s made pending, to be processed after the added packages as in a fresh build\n", strings.Join(names, " "))
	return nil
}

// verify checks the derived root's packages against a fresh build's, per
// the model, once the model has shown it is right for the base.
func (p *derivePlan) verify(pkgs *lockfile.Recipe, log io.Writer) bool {
	m := p.model()
	if m.err != nil {
		fmt.Fprintf(log, "derive: dropped the derived root, building fresh: %v\n", m.err)
		return false
	}
	if got, want := packageSet(p.basePkgs.Packages), simSet(m.sims[0]); !slices.Equal(got, want) {
		fmt.Fprintf(log, "derive: dropped the derived root, building fresh: the model of a fresh build is wrong for the base (%s)\n", setDiff(got, want))
		return false
	}
	fmt.Fprintf(log, "derive: the model of a fresh build matches the base's %d packages (%s)\n", len(p.basePkgs.Packages), m.took.Round(time.Millisecond))
	if got, want := packageSet(pkgs.Packages), simSet(m.sims[1]); !slices.Equal(got, want) {
		fmt.Fprintf(log, "derive: dropped the derived root, building fresh: its packages are not a fresh build's (%s)\n", setDiff(got, want))
		return false
	}
	return true
}
