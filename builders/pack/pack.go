// Package pack turns an image root tree into IMS artifacts: a reproducible
// squashfs rootfs made by mksquashfs, and the kernel and initrd from /boot.
package pack

import (
	"context"
	"errors"
	"io"
)

// Options configure Pack.
type Options struct {
	Compression      string   // zstd (default) | xz | gzip | lz4 | lzo
	Level            int      // 0: compressor default (zstd 3)
	BlockSize        int64    // bytes; 0: 1 MiB
	Exclude          []string // extra -e patterns relative to the root
	SourceDateEpoch  int64    // -mkfs-time / -all-time; 0: 0 (the epoch)
	KernelFileName   string   // name hint; default "vmlinuz"
	InitrdFileName   string   // name hint; default "initrd"
	KernelParameters string   // when not empty, written as the boot_parameters artifact
	RequireBoot      bool     // error when no kernel or initrd is found
	Log              io.Writer
}

// Artifact is one packed file in the output dir.
type Artifact struct {
	Name      string // rootfs | kernel | initrd | boot_parameters
	Path      string // absolute path in outDir
	Size      int64
	SHA256    string // hex
	MD5       string // hex
	MediaType string // IMS media type
}

// Pack writes the artifacts of root into outDir (which must exist) and
// returns them, rootfs first.
func Pack(ctx context.Context, root, outDir string, opts Options) ([]Artifact, error) {
	return nil, errors.New("pack: not implemented")
}

// ToolVersion returns the mksquashfs version line, part of every pack key.
func ToolVersion(ctx context.Context) (string, error) {
	return "", errors.New("pack: not implemented")
}
