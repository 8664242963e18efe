package pack

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/imsbuild/imsbuild/ims"
)

// Options configure Pack.
type Options struct {
	Compression     string   // zstd (default) | xz | gzip | lz4 | lzo
	Level           int      // 0: compressor default (zstd 3)
	BlockSize       int64    // bytes; 0: 1 MiB
	Exclude         []string // extra -e patterns relative to the root
	SourceDateEpoch int64    // -mkfs-time / -all-time; 0: 0 (the epoch)
	KernelFileName  string   // name hint; default "vmlinuz"
	InitrdFileName  string   // name hint; default "initrd"
	// KernelParameters, when not empty, is the boot_parameters artifact,
	// whatever the root holds. Otherwise the root's /boot/kernel-parameters
	// is, as IMS packs it; and when the root has none, the file at the host
	// path InheritedParameters (a parent image's boot_parameters) when set.
	KernelParameters    string
	InheritedParameters string
	RequireBoot         bool // error when no kernel or initrd is found
	// Env holds the allowlisted "NAME=value" variables for mksquashfs; the
	// rest of the host environment is not passed (as for every other tool).
	Env []string
	Log io.Writer
	// Verbose gets mksquashfs' statistics in full, and Log a one-line
	// summary of them; nil: Log gets both.
	Verbose io.Writer
}

// Artifact is one packed file in the output dir.
type Artifact struct {
	Name      string // rootfs | kernel | initrd | boot_parameters
	Path      string // absolute path in outDir
	Size      int64
	SHA256    string // hex; "" for the rootfs (see Checksums)
	MD5       string // hex; "" for the rootfs
	MediaType string // IMS media type
}

// Pack writes the artifacts of root into outDir (which must exist) and
// returns them, rootfs first, then kernel, initrd and boot_parameters when
// present (see Options.KernelParameters for where that comes from). The kernel is KernelFileName in /boot (a name with a slash is
// relative to the root) or else the newest vmlinuz-* or Image-*; the
// initrd is InitrdFileName or else the initrd.img-*, initrd-* or
// initramfs-*.img of the kernel's version, else the newest.
func Pack(ctx context.Context, root, outDir string, opts Options) ([]Artifact, error) {
	args, err := mksquashfsArgs(opts)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", root, err)
	}
	outDir, err = filepath.Abs(outDir)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", root, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("pack %s: not a directory", root)
	}
	boot, err := findBoot(root, opts)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", root, err)
	}
	defer boot.close()
	if opts.RequireBoot {
		if boot.kernel == nil {
			return nil, fmt.Errorf("pack %s: no kernel in /boot (looked for %s, vmlinuz-*, Image-*)", root, hint(opts.KernelFileName, "vmlinuz"))
		}
		if boot.initrd == nil {
			return nil, fmt.Errorf("pack %s: no initrd in /boot (looked for %s, initrd.img-*, initrd-*, initramfs-*.img)", root, hint(opts.InitrdFileName, "initrd"))
		}
	}

	rootfs := filepath.Join(outDir, ims.ArtifactRootfs)
	if err := mksquashfs(ctx, root, rootfs, args, opts.Env, opts.Log, opts.Verbose); err != nil {
		os.Remove(rootfs)
		return nil, fmt.Errorf("pack %s: %w", root, err)
	}
	fi, err := os.Stat(rootfs)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", root, err)
	}
	// The rootfs checksums are left to whoever stores it, in the pass that
	// copies it anyway (see Checksums): hashing it here would read hundreds
	// of megabytes once more.
	arts := []Artifact{{Name: ims.ArtifactRootfs, Path: rootfs, Size: fi.Size(), MediaType: ims.MediaTypeRootfs}}

	for _, b := range []struct {
		name string
		f    *os.File
	}{{ims.ArtifactKernel, boot.kernel}, {ims.ArtifactInitrd, boot.initrd}} {
		if b.f == nil {
			continue
		}
		a, err := copyArtifact(ctx, b.name, filepath.Join(outDir, b.name), b.f)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %s: %w", root, b.name, err)
		}
		arts = append(arts, a)
	}
	// The boot_parameters artifact, in the order of precedence that
	// Options.KernelParameters documents.
	var params io.Reader
	switch {
	case opts.KernelParameters != "":
		params = strings.NewReader(opts.KernelParameters)
	case boot.params != nil:
		params = boot.params
	case opts.InheritedParameters != "":
		f, err := os.Open(opts.InheritedParameters)
		if err != nil {
			return nil, fmt.Errorf("pack %s: inherited kernel parameters: %w", root, err)
		}
		defer f.Close()
		params = f
	}
	if params != nil {
		a, err := copyArtifact(ctx, ims.ArtifactBootParameters, filepath.Join(outDir, ims.ArtifactBootParameters), params)
		if err != nil {
			return nil, fmt.Errorf("pack %s: %s: %w", root, ims.ArtifactBootParameters, err)
		}
		arts = append(arts, a)
	}
	return arts, nil
}

func hint(name, def string) string {
	if name == "" {
		return def
	}
	return name
}
