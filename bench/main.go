// Command bench measures imsbuild against the raw tools on the same data in
// the same run and prints ratios (imsbuild time / raw tool time):
//
//	go run ./bench -imsbuild bin/imsbuild [-size 400] [-files 11000] [-pairs 3]
//
// Every comparison runs the two sides alternately, -pairs pairs (A B, B A,
// …), and prints the median of the pairs' ratios with their min–max and the
// load average: on a shared machine one run swings by a third, and the
// spread says how far the figure can be trusted.
//
//   - treehash: cold tree digest vs `find | xargs sha256sum`; warm (stat cache) absolute.
//   - pack: builders/pack.Pack vs the same mksquashfs command by hand.
//   - noop: `imsbuild build` of a 10-image graph, all cached, vs `imsbuild version` + hashing the inputs.
//   - customize: a one-line script on a 400 MB image vs unsquashfs+chroot+mksquashfs by hand,
//     for a first child (the parent's tree unpacked into the cache) and a next one (tree cached).
//   - check: `imsbuild build --check` of a pack-only step vs mksquashfs by hand and vs a build of it.
//   - kiwi (-only kiwi; minutes): recipe builds vs `kiwi-ng system build`, with their
//     phases (bootstrap, package install, config, pack, initrd); kiwi-cold: the cold builds only;
//     kiwi-ab: cold builds of -imsbuild against -imsbuild-base (a change's effect by phase);
//     kiwi-second: the second recipe only (one package added; derived from the first recipe's
//     prepared root), reusing the first builds of an earlier -only kiwi run when they are there.
//   - kiwi-arm64 (-only kiwi-arm64; tens of minutes): examples/debian-arm64 built cold for
//     aarch64 (emulated on x86_64) vs for x86_64, their ratio, and the warm rebuilds of each.
//   - s3, oci: publishing 1 GiB vs aws s3 cp and crane push.
//   - serve-create-warm (-only serve-create-warm; minutes, real kiwi): a second IMS create job
//     of an unchanged recipe through imsbuild serve, POST to success.
//   - k8s-dispatch (-only k8s-dispatch): the Kubernetes executor's cost per step in the
//     orchestrator, 1,000 steps against client-go's fake clientset.
//   - k8s-build (-only k8s-build; minutes): the orchestrator's whole cost per step of a
//     1,000-step build (parse, plan, key, look up, stage, dispatch, results) through the
//     Kubernetes executor on the fake clientset with instantaneous pods, beside a local
//     build of the same graph; S3 caches on versitygw (k8sbuild.go).
//   - serve-api (-only serve-api; a minute): imsbuild serve with 10,000 images and 50
//     concurrent clients: list (gzip and plain) and POST p50/p99 by round, the server's peak RSS.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/builders/pack"
	"github.com/imsbuild/imsbuild/internal/treehash"
)

func main() {
	bin := flag.String("imsbuild", "bin/imsbuild", "imsbuild binary to measure")
	base := flag.String("imsbuild-base", "", "imsbuild binary to compare with (-only kiwi-ab)")
	sizeMB := flag.Int("size", 400, "size of the generated tree in MB")
	files := flag.Int("files", 11000, "number of files in the generated tree")
	keep := flag.Bool("keep", false, "keep the scratch directory")
	scratchDir := flag.String("scratch", "", "use and keep this scratch directory (-only kiwi-second reuses the first builds an -only kiwi run left in it)")
	only := flag.String("only", "treehash,pack,noop,customize,check", "comma-separated benchmarks to run")
	flag.IntVar(&pairRuns, "pairs", pairRuns, "A/B pairs per comparison (at least 3 for a figure worth quoting)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (the in-process publishes and hashing) to `file`")
	flag.IntVar(&k8sSteps, "k8s-steps", 1000, "steps of -only k8s-dispatch and k8s-build")
	flag.StringVar(&k8sProfile, "k8s-cpuprofile", "", "write a CPU profile of -only k8s-build's Kubernetes runs (not its local build) to `file`; not with -cpuprofile")
	flag.IntVar(&k8sJobs, "k8s-jobs", 16, "steps at once of -only k8s-dispatch and k8s-build (its Kubernetes runs)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	if pairRuns < 1 {
		check(fmt.Errorf("-pairs %d: want at least 1", pairRuns))
	}
	ctx := context.Background()
	scratch := *scratchDir
	if scratch == "" {
		var err error
		scratch, err = os.MkdirTemp("", "imsbuild-bench-")
		check(err)
		if !*keep {
			defer os.RemoveAll(scratch)
		}
	} else {
		check(os.MkdirAll(scratch, 0o755))
	}
	tree := filepath.Join(scratch, "tree")
	if strings.Contains(*only, "treehash") || strings.Contains(*only, "pack") || strings.Contains(*only, "customize") || strings.Contains(*only, "check") {
		fmt.Printf("generating %d MB in %d files...\n", *sizeMB, *files)
		check(genTree(tree, int64(*sizeMB)<<20, *files))
		dropCaches()
	}

	for _, name := range strings.Split(*only, ",") {
		switch name {
		case "treehash":
			benchTreehash(ctx, scratch, tree)
		case "k8s-dispatch":
			benchK8sDispatch(ctx, k8sSteps, k8sJobs)
		case "k8s-build":
			benchK8sBuild(ctx, scratch, k8sSteps, k8sJobs)
		case "pack":
			benchPack(ctx, scratch, tree)
		case "noop":
			benchNoop(ctx, scratch, *bin)
		case "customize":
			benchCustomize(scratch, tree, *bin)
		case "check":
			benchCheck(scratch, tree, *bin)
		case "kiwi", "kiwi-cold":
			benchKiwi(scratch, *bin, name == "kiwi-cold")
		case "kiwi-second":
			benchKiwiSecond(scratch, *bin)
		case "kiwi-ab":
			benchKiwiAB(scratch, *bin, *base)
		case "kiwi-arm64":
			benchKiwiArm64(scratch, *bin)
		case "s3", "oci":
			benchPublish(ctx, scratch, name)
		case "serve-create-warm":
			benchServeCreateWarm(ctx, scratch, *bin)
		case "serve-api":
			benchServeAPI(ctx, scratch, *bin)
		default:
			check(fmt.Errorf("unknown benchmark %q", name))
		}
	}
}

func benchTreehash(ctx context.Context, scratch, tree string) {
	cold := pairs(pairRuns, func() {
		_, err := treehash.Dir(ctx, tree, nil)
		check(err)
	}, func() {
		run("sh", "-c", "cd "+tree+" && find . -type f -print0 | xargs -0 -P2 -n64 sha256sum >/dev/null")
	})
	sc, err := treehash.OpenStatCache(filepath.Join(scratch, "statcache"))
	check(err)
	_, err = treehash.Dir(ctx, tree, sc)
	check(err)
	time.Sleep(2100 * time.Millisecond) // past the racy-mtime window
	_, err = treehash.Dir(ctx, tree, sc)
	check(err)
	warm := median(5, func() {
		_, err := treehash.Dir(ctx, tree, sc)
		check(err)
	})
	fmt.Printf("treehash cold: imsbuild %v, find|xargs sha256sum %v, ratio %.2f (%s; goal ≤ 1.5)\n",
		cold.oursMedian(), cold.rawMedian(), cold.ratio(), cold.spread(false))
	fmt.Printf("treehash warm (stat cache): %v (goal < 50ms)\n", warm)
}

func benchPack(ctx context.Context, scratch, tree string) {
	out := filepath.Join(scratch, "pack")
	check(os.MkdirAll(out, 0o755))
	squash := func(dst string) string {
		return "mksquashfs " + tree + " " + dst + " -noappend -reproducible -mkfs-time 0 -all-time 0" +
			" -comp zstd -Xcompression-level 3 -b 1M -no-progress -quiet"
	}
	raw := filepath.Join(scratch, "raw.squashfs")
	c := pairs(pairRuns, func() {
		_, err := pack.Pack(ctx, tree, out, pack.Options{})
		check(err)
	}, func() { run("sh", "-c", squash(raw)) })
	fmt.Printf("pack: imsbuild %v, mksquashfs by hand %v, ratio %.3f (%s; goal ≤ 1.05)\n",
		c.oursMedian(), c.rawMedian(), c.ratio(), c.spread(false))
	sums := pairs(pairRuns, func() {
		arts, err := pack.Pack(ctx, tree, out, pack.Options{})
		check(err)
		_, _, err = pack.Checksums(ctx, arts[0].Path)
		check(err)
	}, func() { run("sh", "-c", squash(raw)+" && md5sum "+raw+" >/dev/null && sha256sum "+raw+" >/dev/null") })
	fmt.Printf("pack incl. md5+sha256: imsbuild %v, mksquashfs+md5sum+sha256sum by hand %v, ratio %.3f (%s)\n",
		sums.oursMedian(), sums.rawMedian(), sums.ratio(), sums.spread(false))
}

// benchNoop times an all-cached build of a 10-image graph.
func benchNoop(ctx context.Context, scratch, bin string) {
	dir := filepath.Join(scratch, "noop")
	root := filepath.Join(dir, "root")
	check(genTree(root, 4<<20, 200))
	hcl := ""
	for i := range 10 {
		hcl += fmt.Sprintf("image \"i%d\" {\n  import = \"./root\"\n  name = \"i%d\"\n}\n", i, i)
	}
	hcl += "publish \"dir\" \"out\" {\n  images = ["
	for i := range 10 {
		if i > 0 {
			hcl += ", "
		}
		hcl += "image.i" + strconv.Itoa(i)
	}
	hcl += "]\n  path = \"out\"\n}\n"
	check(os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(hcl), 0o644))
	run(bin, "build", dir)
	time.Sleep(2100 * time.Millisecond) // past the racy-mtime window of the stat cache
	run(bin, "build", dir)
	sc, err := treehash.OpenStatCache(filepath.Join(scratch, "noop-statcache"))
	check(err)
	_, _ = treehash.Dir(ctx, root, sc)
	check(sc.Save())
	time.Sleep(2100 * time.Millisecond)
	// The floor: starting the binary, plus hashing the inputs with a warm
	// stat cache.
	c := pairs(max(pairRuns, 5), func() { run(bin, "build", dir) }, func() {
		run(bin, "version")
		sc, err := treehash.OpenStatCache(filepath.Join(scratch, "noop-statcache"))
		check(err)
		_, err = treehash.Dir(ctx, root, sc)
		check(err)
	})
	fmt.Printf("no-op build of 10 images: %v (goal < 150ms); version+hash %v; ratio %.2f (%s; goal < 2)\n",
		c.oursMedian(), c.rawMedian(), c.ratio(), c.spread(false))
}

// benchCustomize times an image → image customization with a one-line
// script against the same steps by hand: unsquashfs, chroot, mksquashfs.
func benchCustomize(scratch, tree, bin string) {
	dir := filepath.Join(scratch, "customize")
	check(os.MkdirAll(dir, 0o755))
	busybox, err := exec.LookPath("busybox")
	check(err)
	check(os.MkdirAll(filepath.Join(tree, "bin"), 0o755))
	check(os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	run("cp", busybox, filepath.Join(tree, "bin/busybox"))
	_ = os.Symlink("busybox", filepath.Join(tree, "bin/sh"))
	hcl := `variable "n" {
  type    = string
  default = "0"
}
image "base" {
  import = "` + tree + `"
}
image "custom" {
  from = image.base
  customize {
    inline = "echo run-${var.n} > /etc/customized"
  }
}
`
	check(os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(hcl), 0o644))
	run(bin, "build", dir) // cold: import + pack the 400 MB base once
	i := 0
	base := filepath.Join(scratch, "base.squashfs")
	run("mksquashfs", tree, base, "-noappend", "-reproducible", "-mkfs-time", "0", "-all-time", "0",
		"-comp", "zstd", "-Xcompression-level", "3", "-b", "1M", "-no-progress", "-quiet")
	work := filepath.Join(scratch, "by-hand")
	byHand := func() {
		os.RemoveAll(work)
		run("unsquashfs", "-q", "-no-progress", "-d", work, base)
		run("chroot", work, "/bin/sh", "-c", "echo run > /etc/customized")
		run("mksquashfs", work, filepath.Join(scratch, "custom.squashfs"), "-noappend", "-reproducible",
			"-mkfs-time", "0", "-all-time", "0", "-comp", "zstd", "-Xcompression-level", "3", "-b", "1M", "-no-progress", "-quiet")
		run("sh", "-c", "md5sum "+filepath.Join(scratch, "custom.squashfs")+" >/dev/null")
	}
	ours := func() {
		i++
		run(bin, "build", dir, "-var", "n="+strconv.Itoa(i)) // base cached, custom rebuilt
	}
	// Cold: the first child of a parent, which unpacks the parent into
	// the cache's tree cache (removed before, untimed). Warm: every later
	// child (a sibling, a rebuild), on the tree as it is.
	trees := filepath.Join(dir, ".imsbuild", "cache", "trees")
	cold := pairsAfter(pairRuns, func() { check(os.RemoveAll(trees)) }, ours, byHand)
	warm := pairs(pairRuns, ours, byHand)
	os.RemoveAll(work)
	fmt.Printf("customize 400 MB image, one-line script, first child (tree unpacked): imsbuild %v, unsquashfs+chroot+mksquashfs+md5sum by hand %v, ratio %.2f (%s); %s\n",
		cold.oursMedian(), cold.rawMedian(), cold.ratio(), cold.spread(false), cold.cpu())
	fmt.Printf("customize 400 MB image, one-line script, next child (tree cached): imsbuild %v (goal < 5s), by hand %v, ratio %.2f (%s; goal ≤ 0.5, issue 16); %s\n",
		warm.oursMedian(), warm.rawMedian(), warm.ratio(), warm.spread(false), warm.cpu())
}

func genTree(root string, size int64, files int) error {
	r := rand.New(rand.NewPCG(1, 2))
	per := size / int64(files)
	buf := make([]byte, per)
	for i := range files {
		d := filepath.Join(root, fmt.Sprintf("d%02d/s%02d", i%37, i%11))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		// Half random (incompressible), half repetitive, like a real root.
		for j := range buf {
			if j < len(buf)/2 {
				buf[j] = byte(r.Uint32())
			} else {
				buf[j] = byte(j % 7)
			}
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func dropCaches() { _ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200) }

func median(n int, f func()) time.Duration {
	ds := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		f()
		ds[i] = time.Since(start)
	}
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	return ds[n/2]
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	if out, err := cmd.Output(); err != nil {
		fmt.Fprintf(os.Stderr, "%s %v: %v\n%s", name, args, err, out)
		os.Exit(1)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
