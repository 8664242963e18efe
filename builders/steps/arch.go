package steps

import (
	"context"
	"fmt"
	"io"

	"github.com/imsbuild/imsbuild/builders/binfmt"
	"github.com/imsbuild/imsbuild/builders/builderimage"
)

// The architecture of a step. A step of an aarch64 image on an x86_64 host
// runs its programs (kiwi's chroot, customize scripts) under qemu user-mode
// emulation (package binfmt); its key names the emulator, which can change
// what the programs do: the one the kernel runs (binfmt.Emulator.Identity),
// so a pod keys the step for its node's emulator. A step of the host's
// architecture keys no emulator, so its key is the same as before
// emulation existed.
//
// An executor that builds elsewhere may run a step natively on a machine
// of its arch (an arm64 Kubernetes node, kubernetes.io/arch=arm64): there
// KeyEnv.Emulated is false and no emulator is keyed, since the key
// describes the build that runs. The process that builds the step keys it
// again with its own host's binfmt.Emulated and gets the same key.

// emulatorTool is the Tools entry of the emulator for arch: its name and
// identity, or "" when the step runs natively (arch is the host's, or
// the executor's machine's).
func emulatorTool(ctx context.Context, k KeyEnv, arch string) (string, string, error) {
	emulated := binfmt.Emulated(arch)
	if k.Emulated != nil && arch != "" {
		var err error
		if emulated, err = k.Emulated(ctx, arch); err != nil {
			return "", "", fmt.Errorf("where %s steps run: %w", arch, err)
		}
	}
	if !emulated {
		return "", "", nil
	}
	e, err := binfmt.Lookup(arch, "")
	if err != nil {
		return "", "", err
	}
	// Once per build, not ToolVersion's cache across builds: that keys
	// by the binary at Interpreter, and the emulator that runs is the
	// file binfmt_misc opened (Identity), which may be another.
	id, err := k.Once("emulator:"+arch, func() (string, error) { return e.Identity(ctx) })
	if err != nil {
		return "", "", fmt.Errorf("emulator of %s: %w", arch, err)
	}
	return "emulator", id, nil
}

// ensureEmulator makes arch's binaries run here when arch is not the
// host's (see binfmt.Ensure), noting the emulator in log.
func ensureEmulator(arch string, log io.Writer) error {
	if !binfmt.Emulated(arch) {
		return nil
	}
	e, err := binfmt.Ensure(arch, "", log)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "%s binaries run emulated by %s (binfmt_misc %s)\n", arch, e.Interpreter, e.Handler)
	return nil
}

// builderOptions are the builder image options of an image of arch: the
// variant of a multi-platform image for arch (an emulated one runs whole
// under the emulator, as IMS's aarch64 builder does on x86_64); for other
// arches the default platform, so their keys stay as they were.
func builderOptions(arch string) builderimage.Options {
	switch arch {
	case "aarch64":
		return builderimage.Options{Platform: "linux/arm64"}
	}
	return builderimage.Options{} // linux/amd64, as before

}

// targetArch is kiwi's --target-arch for a recipe of arch: "" (the host's)
// unless emulated, so a host-architecture prepare runs kiwi as before.
func targetArch(arch string) string {
	if binfmt.Emulated(arch) {
		return arch
	}
	return ""
}
