package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// benchKiwiArm64 (-only kiwi-arm64; tens of minutes on x86_64): the one
// recipe of examples/debian-arm64 built cold for x86_64 and for aarch64
// (emulated by qemu-user-static on an x86_64 machine), each from empty
// imsbuild, kiwi package and bootstrap caches, and their ratio (issue 15
// expects several times); then a warm rebuild of each with nothing changed
// (goal: the aarch64 one as fast as the x86_64 one, since nothing runs).
func benchKiwiArm64(scratch, bin string) {
	example, err := filepath.Abs("examples/debian-arm64")
	check(err)
	dir := filepath.Join(scratch, "kiwi-arm64")
	check(os.MkdirAll(dir, 0o755))
	cold, warm := map[string]time.Duration{}, map[string]time.Duration{}
	targets := []string{"image.x86", "image.arm64"}
	for _, target := range targets {
		ours := filepath.Join(dir, target)
		os.RemoveAll(ours)
		run("cp", "-a", example, ours)
		os.RemoveAll(filepath.Join(ours, ".imsbuild"))
		os.RemoveAll(filepath.Join(ours, "out"))
		kiwiCache, bootstrap := filepath.Join(dir, target+"-kiwi-cache"), filepath.Join(dir, target+"-bootstrap")
		emptyDir(kiwiCache)
		emptyDir(bootstrap)
		var p phases
		cold[target] = timed(func() {
			p = buildPhases(kiwiCache, bin, "build", "--bootstrap-cache", bootstrap, ours, target)
		})
		fmt.Printf("  %s cold: %v: %v (load %s)\n", target, cold[target].Round(time.Second), p, loadAvg())
		warm[target] = timed(func() { run(bin, "build", "--bootstrap-cache", bootstrap, ours, target) })
	}
	fmt.Printf("kiwi arm64 cold: aarch64 (emulated) %v, x86_64 %v, ratio %.1f\n",
		cold["image.arm64"].Round(time.Second), cold["image.x86"].Round(time.Second),
		cold["image.arm64"].Seconds()/cold["image.x86"].Seconds())
	fmt.Printf("kiwi arm64 warm rebuild: aarch64 %v, x86_64 %v (goal: as fast)\n",
		warm["image.arm64"].Round(time.Millisecond), warm["image.x86"].Round(time.Millisecond))
}
