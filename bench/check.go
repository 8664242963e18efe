package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// benchCheck times `imsbuild build --check` of a pack-only step (an import
// of the generated tree, identical on rebuild) against the same mksquashfs
// by hand, and against building that step again (a new name, so a new
// key): a check costs one build of the step, which is about one pack.
func benchCheck(scratch, tree, bin string) {
	dir := filepath.Join(scratch, "check")
	check(os.MkdirAll(dir, 0o755))
	hcl := `variable "n" {
  type    = string
  default = "0"
}
image "base" {
  name   = "base-${var.n}"
  import = "` + tree + `"
}
`
	check(os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(hcl), 0o644))
	run(bin, "build", dir)
	raw := filepath.Join(scratch, "check-raw.squashfs")
	c := pairs(pairRuns, func() { run(bin, "build", "--check", dir) }, func() {
		run("mksquashfs", tree, raw, "-noappend", "-reproducible", "-mkfs-time", "0", "-all-time", "0",
			"-comp", "zstd", "-Xcompression-level", "3", "-b", "1M", "-no-progress", "-quiet")
	})
	fmt.Printf("check of a pack-only step: imsbuild build --check %v, mksquashfs by hand %v, ratio %.2f (%s; goal: about one pack)\n",
		c.oursMedian(), c.rawMedian(), c.ratio(), c.spread(false))
	i := 0
	b := pairs(pairRuns, func() { run(bin, "build", "--check", dir) }, func() {
		i++
		run(bin, "build", dir, "-var", "n="+strconv.Itoa(i))
	})
	fmt.Printf("check vs build of the same step: --check %v, build %v, ratio %.2f (%s)\n",
		b.oursMedian(), b.rawMedian(), b.ratio(), b.spread(false))
}
