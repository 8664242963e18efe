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
//     package caches) vs `kiwi-ng --type kis system build`;
//   - a second recipe sharing most packages (one package added), built
//     on the same runner with the same cache as the first (bootstrap
//     root and packages cached), vs raw kiwi of that recipe with kiwi's
//     own package cache of the first raw run;
//   - a warm rebuild with nothing changed, and one with only a customize
//     script changed (no kiwi run).
func benchKiwi(scratch, bin string) {
	example, err := filepath.Abs("examples/debian-node")
	check(err)
	dir := filepath.Join(scratch, "kiwi")
	check(os.MkdirAll(dir, 0o755))

	// Cold: a fresh copy of the example, empty imsbuild and kiwi package
	// caches, on both sides of every pair.
	ours := filepath.Join(dir, "ours")
	n := 0
	cold := pairs(pairRuns, func() {
		os.RemoveAll(ours)
		run("cp", "-a", example, ours)
		os.RemoveAll(filepath.Join(ours, ".imsbuild"))
		os.RemoveAll(filepath.Join(ours, "out"))
		check(os.RemoveAll("/var/cache/imsbuild/kiwi"))
		run(bin, "build", ours, "image.base")
	}, func() {
		n++
		check(os.RemoveAll("/var/cache/kiwi"))
		rawKiwi(dir, filepath.Join(example, "recipes/node"), fmt.Sprintf("raw%d", n))
	})
	fmt.Printf("kiwi cold: imsbuild %v, kiwi-ng system build (kis) %v, ratio %.2f (%s; goal ≤ 0.7)\n",
		cold.oursMedian(), cold.rawMedian(), cold.ratio(), cold.spread(false))

	run(bin, "build", ours) // the customized image and the publish, once
	warm := timed(func() { run(bin, "build", ours) })
	script := filepath.Join(ours, "scripts/compute.sh")
	b, err := os.ReadFile(script)
	check(err)
	check(os.WriteFile(script, append(b, []byte("echo bench > /etc/bench\n")...), 0o755))
	custom := timed(func() { run(bin, "build", ours) })
	fmt.Printf("kiwi warm rebuild: %v (goal < 1s); customize script changed: %v (goal < 15s, no kiwi)\n", warm, custom)

	// A second recipe: the same plus one package, on the same runner with
	// the same cache as the first (as a CI runner or a nightly pipeline
	// has): every pair starts from a copy of the first build's cache, and
	// raw kiwi from its package cache of the last cold run.
	second := filepath.Join(dir, "second")
	run("cp", "-a", example, second)
	os.RemoveAll(filepath.Join(second, ".imsbuild"))
	xml := filepath.Join(second, "recipes/node/config.xml")
	x, err := os.ReadFile(xml)
	check(err)
	check(os.WriteFile(xml, []byte(strings.Replace(string(x), `<package name="iproute2"/>`, `<package name="iproute2"/>
        <package name="less"/>`, 1)), 0o644))
	firstCache, cacheCopy := filepath.Join(ours, ".imsbuild/cache"), filepath.Join(dir, "second-cache")
	rawCache := filepath.Join(dir, "raw-kiwi-cache")
	run("cp", "-a", "/var/cache/kiwi", rawCache)
	secondPairs := pairs(pairRuns, func() {
		os.RemoveAll(cacheCopy)
		run("cp", "-a", "--reflink=auto", firstCache, cacheCopy)
		run(bin, "--cache-dir", cacheCopy, "build", second, "image.base")
	}, func() {
		n++
		check(os.RemoveAll("/var/cache/kiwi"))
		run("cp", "-a", rawCache, "/var/cache/kiwi")
		rawKiwi(dir, filepath.Join(second, "recipes/node"), fmt.Sprintf("raw%d", n))
	})
	fmt.Printf("kiwi second recipe sharing packages: imsbuild %v, kiwi-ng system build %v, ratio %.2f (%s; goal ≤ 0.5)\n",
		secondPairs.oursMedian(), secondPairs.rawMedian(), secondPairs.ratio(), secondPairs.spread(false))
}

// rawKiwi runs `kiwi-ng --type kis system build` of a copy of desc, with
// the template rendered as imsbuild does.
func rawKiwi(dir, desc, name string) {
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
	cmd := exec.Command("kiwi-ng", "--type", "kis", "system", "build", "--description", d, "--target-dir", target)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+filepath.Join(dir, name+"-gnupg"))
	check(os.MkdirAll(filepath.Join(dir, name+"-gnupg"), 0o700))
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "kiwi-ng system build: %v\n%s\n", err, tailLines(string(out), 30))
		os.Exit(1)
	}
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
