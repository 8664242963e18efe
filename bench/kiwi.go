package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// benchKiwi compares recipe builds with the raw tool on the same
// description (minutes; run it alone):
//   - a cold imsbuild build of examples/debian-node (empty imsbuild and
//     package caches) vs `kiwi-ng --type kis system build` (a kis type
//     without a filesystem: kernel and initrd, no rootfs image, so the raw
//     side packs nothing while imsbuild packs a squashfs; kiwi's squashfs
//     would be zstd level 15 or xz, slower than imsbuild's, and would flatter
//     the ratio);
//   - a second recipe sharing most packages (one package added), built
//     on the same runner with the same cache as the first (bootstrap
//     root, packages and the first prepared root cached: derived from
//     it), vs raw kiwi of that recipe with kiwi's own package cache of
//     the first raw run;
//   - a warm rebuild with nothing changed, and one with only a customize
//     script changed (no kiwi run).
//
// The builds report their phases (kiwiphases.go). coldOnly (-only
// kiwi-cold) stops after the cold comparison.
func benchKiwi(scratch, bin string, coldOnly bool) {
	k := newKiwiScratch(scratch)
	ours := k.ours
	// Cold: a fresh copy of the example, empty imsbuild and kiwi package
	// caches, on both sides of every pair.
	var oursPhases, rawPhases []phases
	cold := pairs(pairRuns, func() {
		oursPhases = append(oursPhases, k.coldOurs(bin))
		fmt.Printf("  imsbuild cold: %v (load %s)\n", oursPhases[len(oursPhases)-1], loadAvg())
	}, func() {
		rawPhases = append(rawPhases, k.coldRaw(fmt.Sprintf("raw%d", k.next())))
		fmt.Printf("  kiwi-ng cold: %v (load %s)\n", rawPhases[len(rawPhases)-1], loadAvg())
	})
	fmt.Printf("kiwi cold: imsbuild %v, kiwi-ng system build (kis) %v, ratio %.2f (%s; goal ≤ 0.2)\n",
		cold.oursMedian(), cold.rawMedian(), cold.ratio(), cold.spread(false))
	fmt.Printf("kiwi cold phases: %s\n", phaseTable(oursPhases, rawPhases))
	if coldOnly {
		return
	}

	run(bin, "build", ours) // the customized image and the publish, once
	warm := timed(func() { run(bin, "build", ours) })
	script := filepath.Join(ours, "scripts/compute.sh")
	b, err := os.ReadFile(script)
	check(err)
	check(os.WriteFile(script, append(b, []byte("echo bench > /etc/bench\n")...), 0o755))
	custom := timed(func() { run(bin, "build", ours) })
	fmt.Printf("kiwi warm rebuild: %v (goal < 1s); customize script changed: %v (goal < 15s, no kiwi)\n", warm, custom)

	benchSecondRecipe(k, bin)
}

// kiwiScratch is the kiwi benchmarks' scratch layout: the example's
// first build (ours) and each side's kiwi caches, which are their own
// directories here, bound over the machine's (/var/cache/imsbuild/kiwi,
// /var/cache/kiwi) in a private mount namespace: other builds on the
// machine keep theirs, and none of theirs warms a cold run.
type kiwiScratch struct {
	example, dir, ours string
	oursKiwi, rawCache string
	n                  int // raw kiwi runs so far, naming their directories
}

func newKiwiScratch(scratch string) *kiwiScratch {
	example, err := filepath.Abs("examples/debian-node")
	check(err)
	dir := filepath.Join(scratch, "kiwi")
	check(os.MkdirAll(dir, 0o755))
	return &kiwiScratch{example: example, dir: dir, ours: filepath.Join(dir, "ours"),
		oursKiwi: filepath.Join(dir, "ours-kiwi-cache"), rawCache: filepath.Join(dir, "raw-kiwi-cache")}
}

func (k *kiwiScratch) next() int { k.n++; return k.n }

// coldOurs builds image.base of a fresh copy of the example with empty
// imsbuild and kiwi caches.
func (k *kiwiScratch) coldOurs(bin string) phases {
	os.RemoveAll(k.ours)
	run("cp", "-a", k.example, k.ours)
	os.RemoveAll(filepath.Join(k.ours, ".imsbuild"))
	os.RemoveAll(filepath.Join(k.ours, "out"))
	emptyDir(k.oursKiwi)
	return buildPhases(k.oursKiwi, bin, "build", k.ours, "image.base")
}

// coldRaw runs raw kiwi on the example with an empty package cache.
func (k *kiwiScratch) coldRaw(name string) phases {
	emptyDir(k.rawCache)
	return rawKiwi(k.dir, k.rawCache, filepath.Join(k.example, "recipes/node"), name)
}

// benchKiwiSecond (-only kiwi-second) runs the second-recipe comparison
// alone. It needs the first builds of -only kiwi (its imsbuild cache, its
// kiwi and bootstrap caches, raw kiwi's package cache, in the scratch
// directory); a side that has none gets one cold build first, untimed.
func benchKiwiSecond(scratch, bin string) {
	k := newKiwiScratch(scratch)
	k.n = 100 // apart from the raw runs of -only kiwi kept in the scratch directory
	if _, err := os.Stat(filepath.Join(k.ours, ".imsbuild/cache")); err != nil {
		fmt.Println("  (no first imsbuild build in the scratch directory: one cold build first)")
		k.coldOurs(bin)
	}
	if _, err := os.Stat(filepath.Join(k.rawCache, "apt-get")); err != nil {
		fmt.Println("  (no first raw kiwi build in the scratch directory: one cold build first)")
		k.coldRaw("raw-first")
	}
	benchSecondRecipe(k, bin)
}

// benchSecondRecipe compares a second recipe (the example plus one
// package) on the same runner with the same caches as the first build in
// ours (as a CI runner or a nightly pipeline has): every pair starts from
// a copy of the first build's cache and kiwi caches (the bootstrap cache
// and the index of prepared roots to derive from among them), and raw kiwi
// from its package cache of the first raw run.
func benchSecondRecipe(k *kiwiScratch, bin string) {
	dir := k.dir
	second := filepath.Join(dir, "second")
	os.RemoveAll(second)
	run("cp", "-a", k.example, second)
	os.RemoveAll(filepath.Join(second, ".imsbuild"))
	xml := filepath.Join(second, "recipes/node/config.xml")
	x, err := os.ReadFile(xml)
	check(err)
	check(os.WriteFile(xml, []byte(strings.Replace(string(x), `<package name="iproute2"/>`, `<package name="iproute2"/>
        <package name="less"/>`, 1)), 0o644))
	firstCache, cacheCopy := filepath.Join(k.ours, ".imsbuild/cache"), filepath.Join(dir, "second-cache")
	oursKiwiCopy, rawCacheCopy := filepath.Join(dir, "second-ours-kiwi-cache"), filepath.Join(dir, "second-raw-kiwi-cache")
	var oursPhases, rawPhases []phases
	derived := 0
	secondPairs := pairs(pairRuns, func() {
		copyDir(firstCache, cacheCopy)
		copyDir(k.oursKiwi, oursKiwiCopy)
		oursPhases = append(oursPhases, buildPhases(oursKiwiCopy, bin, "--cache-dir", cacheCopy, "build", "--derive", second, "image.base"))
		log, _ := os.ReadFile(filepath.Join(cacheCopy, "logs/image.base.prepare.log"))
		how := "fresh"
		if strings.Contains(string(log), "derive: derived from base") {
			how = "derived"
			derived++
		}
		fmt.Printf("  imsbuild second (%s): %v (load %s)\n", how, oursPhases[len(oursPhases)-1], loadAvg())
	}, func() {
		copyDir(k.rawCache, rawCacheCopy)
		rawPhases = append(rawPhases, rawKiwi(dir, rawCacheCopy, filepath.Join(second, "recipes/node"), fmt.Sprintf("raw%d", k.next())))
		fmt.Printf("  kiwi-ng second: %v (load %s)\n", rawPhases[len(rawPhases)-1], loadAvg())
	})
	fmt.Printf("kiwi second recipe (one package added; %d of %d imsbuild runs derived): imsbuild %v, kiwi-ng system build %v, ratio %.2f (%s; goal ≤ 0.1)\n",
		derived, len(oursPhases), secondPairs.oursMedian(), secondPairs.rawMedian(), secondPairs.ratio(), secondPairs.spread(false))
	fmt.Printf("kiwi second recipe phases: %s\n", phaseTable(oursPhases, rawPhases))
}

// rawKiwi runs `kiwi-ng --type kis system build` of a copy of desc, with
// the template rendered as imsbuild does and cache as its /var/cache/kiwi,
// and returns its phases.
func rawKiwi(dir, cache, desc, name string) phases {
	d := filepath.Join(dir, name+"-desc")
	os.RemoveAll(d)
	run("cp", "-a", desc, d)
	xml := filepath.Join(d, "config.xml")
	x, err := os.ReadFile(xml)
	check(err)
	s := strings.ReplaceAll(string(x), "{{ release }}", "bookworm")
	s = strings.Replace(s, `<type image="tbz"/>`, `<type image="kis"/>`, 1)
	check(os.WriteFile(xml, []byte(s), 0o644))
	target := filepath.Join(dir, name+"-target")
	os.RemoveAll(target)
	logFile := filepath.Join(dir, name+".log")
	os.Remove(logFile) // kiwi appends
	cmd := privateCache(cache, "/var/cache/kiwi", "kiwi-ng", "--type", "kis", "--logfile", logFile, "system", "build", "--description", d, "--target-dir", target)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+filepath.Join(dir, name+"-gnupg"))
	check(os.MkdirAll(filepath.Join(dir, name+"-gnupg"), 0o700))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "kiwi-ng system build: %v\n%s\n", err, tailLines(string(out), 30))
		os.Exit(1)
	}
	end := time.Now()
	b, err := os.ReadFile(logFile)
	check(err)
	// kiwi logs whole seconds: measure its phases from the second it started.
	return rawPhases(kiwiMarks(string(b), start), start.Truncate(time.Second), end)
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// privateCache returns the command that runs name with args where cache is
// bound over the directory target, in a private mount namespace.
func privateCache(cache, target, name string, args ...string) *exec.Cmd {
	check(os.MkdirAll(target, 0o755))
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh", cache, target, name}, args...)...)
}

func emptyDir(dir string) {
	check(os.RemoveAll(dir))
	check(os.MkdirAll(dir, 0o755))
}

func copyDir(src, dst string) {
	check(os.RemoveAll(dst))
	run("cp", "-a", "--reflink=auto", src, dst)
}

// benchKiwiAB compares the cold builds of two imsbuild binaries (-only
// kiwi-ab -imsbuild-base OLD): a change's effect on each phase, measured
// in alternating pairs as the other comparisons are.
func benchKiwiAB(scratch, bin, base string) {
	if base == "" {
		check(fmt.Errorf("-only kiwi-ab needs -imsbuild-base"))
	}
	example, err := filepath.Abs("examples/debian-node")
	check(err)
	dir := filepath.Join(scratch, "kiwi-ab")
	check(os.MkdirAll(dir, 0o755))
	cold := func(bin string) phases {
		src, kiwiCache := filepath.Join(dir, "src"), filepath.Join(dir, "kiwi-cache")
		os.RemoveAll(src)
		run("cp", "-a", example, src)
		os.RemoveAll(filepath.Join(src, ".imsbuild"))
		os.RemoveAll(filepath.Join(src, "out"))
		emptyDir(kiwiCache)
		p := buildPhases(kiwiCache, bin, "build", src, "image.base")
		fmt.Printf("  %s cold: %v (load %s)\n", bin, p, loadAvg())
		return p
	}
	var newPhases, basePhases []phases
	c := pairs(pairRuns, func() { newPhases = append(newPhases, cold(bin)) }, func() { basePhases = append(basePhases, cold(base)) })
	fmt.Printf("kiwi cold, %s vs %s: %v vs %v, ratio %.2f (%s)\n", bin, base, c.oursMedian(), c.rawMedian(), c.ratio(), c.spread(false))
	fmt.Printf("kiwi cold phases: %s\n", strings.Replace(phaseTable(newPhases, basePhases), "imsbuild/kiwi-ng", "new/base", 1))
}
