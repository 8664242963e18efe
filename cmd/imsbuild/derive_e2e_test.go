package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestKiwiDerivedSecondRecipe builds examples/debian-node (recipe A), then
// A plus one package with A's cache: its prepared root is derived from
// A's (no bootstrap, only the added package installed), has the package
// set of a fresh build of the same recipe, and the image's rootfs is a
// fresh build's but for the initrd's file times; a derivation from the
// same base in another cache makes the same bytes; a recipe that removes
// a package builds fresh, and so does a derivation that cannot be checked.
// Minutes: four kiwi prepares and three derivations.
func TestKiwiDerivedSecondRecipe(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng builds: minutes")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "apt-get", "dpkg-trigger"} {
		testutil.RequireTool(t, tool)
	}
	a := copyExample(t, "debian-node")
	cacheA := filepath.Join(a, ".imsbuild/cache")
	buildA := buildImage(t, a)
	if buildA.log(t, "derive:") {
		t.Fatalf("recipe A derived from something:\n%s", buildA.prepareLog)
	}
	pristine, pristine2 := filepath.Join(t.TempDir(), "cache-a"), filepath.Join(t.TempDir(), "cache-a2")
	for _, dst := range []string{pristine, pristine2} {
		if out, err := exec.Command("cp", "-a", cacheA, dst).CombinedOutput(); err != nil {
			t.Fatalf("copy cache: %v\n%s", err, out)
		}
	}

	// A + less, built with A's cache: derived.
	b := copyExample(t, "debian-node")
	editPackages(t, b, `<package name="iproute2"/>`, `<package name="iproute2"/>
        <package name="less"/>`)
	buildB := buildImage(t, b, "--derive", "--cache-dir", cacheA)
	baseA := buildA.outputs(t, cacheA, "image.base/prepare")["prepared-root"].Digest
	if !buildB.log(t, "derive: derived from base "+baseA) || buildB.log(t, "Installing bootstrap packages") ||
		buildB.log(t, "bootstrap cache") {
		t.Fatalf("A+less was not derived from A's root %s without a bootstrap:\n%s", baseA, tail(buildB.prepareLog, 60))
	}
	outB := buildB.outputs(t, cacheA, "image.base/prepare")
	var rec struct {
		Base  string   `json:"base_prepared_root"`
		Added []string `json:"added_packages"`
	}
	readJSONBlob(t, cacheA, outB["derivation"].Digest, &rec)
	if rec.Base != baseA || !slices.Equal(rec.Added, []string{"less"}) {
		t.Errorf("derivation record = %+v, want base %s adding less", rec, baseA)
	}

	// The same recipe built fresh: the same packages, the same rootfs
	// tree but for the initrd (dracut dates its files by the root's
	// times, which a derived root has from the packed base).
	c := copyExample(t, "debian-node")
	editPackages(t, c, `<package name="iproute2"/>`, `<package name="iproute2"/>
        <package name="less"/>`)
	buildC := buildImage(t, c) // fresh: deriving is opt-in
	if buildC.log(t, "derive:") {
		t.Fatalf("a build without --derive derived:\n%s", buildC.prepareLog)
	}
	cacheC := filepath.Join(c, ".imsbuild/cache")
	if got, want := packageLines(t, cacheA, outB["packages"].Digest), packageLines(t, cacheC, buildC.outputs(t, cacheC, "image.base/prepare")["packages"].Digest); !slices.Equal(got, want) {
		t.Errorf("derived packages differ from a fresh build's:\nderived %v\nfresh   %v", got, want)
	} else if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "less ") }) {
		t.Errorf("derived packages have no less: %v", got)
	}
	rootB := buildB.outputs(t, cacheA, "image.base")["rootfs"].Digest
	rootC := buildC.outputs(t, cacheC, "image.base")["rootfs"].Digest
	lb, lc := squashListing(t, cacheA, rootB), squashListing(t, cacheC, rootC)
	if len(lb) != len(lc) {
		t.Errorf("derived rootfs has %d entries, a fresh one %d", len(lb), len(lc))
	}
	for i := range min(len(lb), len(lc)) {
		if lb[i] != lc[i] && !(strings.Contains(lb[i], "/boot/initrd.img-") && strings.Contains(lc[i], "/boot/initrd.img-")) {
			t.Errorf("rootfs entry differs: derived %q, fresh %q", lb[i], lc[i])
		}
	}
	dB, dC := buildB.durations["image.base/prepare"], buildC.durations["image.base/prepare"]
	// Times only logged: on a shared machine a warm fresh prepare (bootstrap
	// and packages cached) and a derivation are both tens of seconds; the
	// log above shows that no bootstrap ran. bench -only kiwi-second
	// measures against raw kiwi.
	t.Logf("prepare of A+less: derived %v, fresh %v", dB, dC)

	// Another cache holding only A derives the same bytes.
	buildB2 := buildImage(t, b, "--derive", "--cache-dir", pristine)
	if root := buildB2.outputs(t, pristine, "image.base")["rootfs"].Digest; root != rootB || !buildB2.log(t, "derive: derived from base "+baseA) {
		t.Errorf("a second derivation from A made rootfs %s, the first %s:\n%s", root, rootB, tail(buildB2.prepareLog, 30))
	}

	// A without iproute2, plus less: no cached recipe has only packages
	// it has, so it builds fresh.
	d := copyExample(t, "debian-node")
	editPackages(t, d, `<package name="iproute2"/>`, `<package name="less"/>`)
	buildD := buildImage(t, d, "--derive", "--cache-dir", cacheA)
	if buildD.log(t, "derive:") || !buildD.log(t, "Installing bootstrap packages") {
		t.Errorf("a recipe that removes a package did not build fresh:\n%s", tail(buildD.prepareLog, 40))
	}

	// A derivation that cannot be checked (the model of a fresh build
	// cannot run: A's index entry names a bootstrap status that is none)
	// is dropped after kiwi ran: the fresh build's bytes, no record.
	breakIndexEntry(t, baseA)
	buildE := buildImage(t, b, "--derive", "--cache-dir", pristine2)
	if !buildE.log(t, "derive: dropped the derived root, building fresh") || !buildE.log(t, "Installing bootstrap packages") {
		t.Fatalf("an unchecked derivation was not dropped for a fresh build:\n%s", tail(buildE.prepareLog, 40))
	}
	if out := buildE.outputs(t, pristine2, "image.base/prepare"); out["derivation"].Digest != "" {
		t.Errorf("a fresh build after a dropped derivation records one: %v", out)
	}
	if root := buildE.outputs(t, pristine2, "image.base")["rootfs"].Digest; root != rootC {
		t.Errorf("the fresh build after a dropped derivation made rootfs %s, a fresh build %s", root, rootC)
	}
}

// breakIndexEntry points the bootstrap status of the derivation index's
// entries of the prepared root base at their package list.
func breakIndexEntry(t *testing.T, base string) {
	t.Helper()
	files, _ := filepath.Glob("/var/cache/imsbuild/kiwi/derive/*.json")
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(raw), base) {
			continue
		}
		var es []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &es); err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if strings.Contains(string(e["prepared"]), base) {
				e["bootstrap_status"] = e["packages"]
				n++
			}
		}
		b, _ := json.Marshal(es)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 {
		t.Fatalf("no derivation index entry names %s", base)
	}
}

// imageBuild is one `imsbuild build image.base` of a test.
type imageBuild struct {
	keys       map[string]string
	durations  map[string]time.Duration
	prepareLog string
}

// buildImage builds image.base of the debian-node copy dir with args
// before `build` and after it.
func buildImage(t *testing.T, dir string, args ...string) *imageBuild {
	t.Helper()
	var global, local []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--cache-dir" {
			global = append(global, args[i], args[i+1])
			i++
		} else {
			local = append(local, args[i])
		}
	}
	start := time.Now()
	r := imsbuild(t, dir, append(append(append(global, "build", "--json"), local...), ".", "image.base")...)
	if r.code != 0 {
		t.Fatalf("build %v: exit %d\n%s\n%s", args, r.code, tail(r.stdout, 40), r.stderr)
	}
	t.Logf("build %s %v: %v", filepath.Base(filepath.Dir(dir)), args, time.Since(start).Round(time.Second))
	b := &imageBuild{keys: map[string]string{}, durations: map[string]time.Duration{}}
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			Step, Status, Key, Message string
			DurationMS                 int64 `json:"duration_ms"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		if ev.Key != "" {
			b.keys[ev.Step] = ev.Key
		}
		if ev.Status == "done" {
			b.durations[ev.Step] = time.Duration(ev.DurationMS) * time.Millisecond
		}
	}
	cache := filepath.Join(dir, ".imsbuild/cache")
	for i := range global {
		if global[i] == "--cache-dir" {
			cache = global[i+1]
		}
	}
	log, err := os.ReadFile(filepath.Join(cache, "logs/image.base.prepare.log"))
	if err != nil {
		t.Fatal(err)
	}
	b.prepareLog = string(log)
	return b
}

func (b *imageBuild) log(t *testing.T, s string) bool { return strings.Contains(b.prepareLog, s) }

// outputs returns the outputs of step's action record in cache.
func (b *imageBuild) outputs(t *testing.T, cache, step string) map[string]struct{ Digest string } {
	t.Helper()
	key := b.keys[step]
	if len(key) != 64 {
		t.Fatalf("no key of %s in the events: %v", step, b.keys)
	}
	var rec struct {
		Result struct {
			Outputs map[string]struct{ Digest string }
		}
	}
	raw, err := os.ReadFile(filepath.Join(cache, "actions", key+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Result.Outputs
}

func blobFile(cache, digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) < 2 {
		return filepath.Join(cache, "blobs/sha256/missing")
	}
	return filepath.Join(cache, "blobs/sha256", hex[:2], hex)
}

func readJSONBlob(t *testing.T, cache, digest string, v any) {
	t.Helper()
	raw, err := os.ReadFile(blobFile(cache, digest))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// packageLines returns a package list blob as "name version arch" lines.
func packageLines(t *testing.T, cache, digest string) []string {
	t.Helper()
	var r struct {
		Packages []struct{ Name, Version, Arch string }
	}
	readJSONBlob(t, cache, digest, &r)
	var out []string
	for _, p := range r.Packages {
		out = append(out, p.Name+" "+p.Version+" "+p.Arch)
	}
	slices.Sort(out)
	return out
}

// squashListing lists a squashfs blob: mode, owner, size, time and path.
func squashListing(t *testing.T, cache, digest string) []string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-lln", "-n", blobFile(cache, digest)).Output()
	if err != nil {
		t.Fatalf("unsquashfs -lln %s: %v", digest, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// editPackages replaces old with new in the recipe of the copy dir.
func editPackages(t *testing.T, dir, old, new string) {
	t.Helper()
	p := filepath.Join(dir, "recipes/node/config.xml")
	x, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(x), old) {
		t.Fatalf("%s has no %s", p, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(x), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}
