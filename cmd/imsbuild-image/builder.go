package main

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/imsbuild/imsbuild/internal/ociimage"
)

// builderPackages are the Debian packages of the builder image: kiwi-ng and
// what its recipes call on the build host (debootstrap, rpm, zypper, dnf,
// the disk and filesystem tools), the sandbox (bubblewrap, runc, util-linux's
// unshare and mount), packing (squashfs-tools, zstd), SSH into a step and
// the CA certificates of a site's repositories. tzdata, because kiwi reads
// the build host's: it removes the root's /etc/localtime before setting
// the recipe's <timezone> only when the link resolves on the host
// (os.path.exists), so without /usr/share/zoneinfo kiwi left tzdata's
// link and a pod built another rootfs than a host. qemu-user-static runs
// aarch64 steps on an amd64 node (builderDpkgPaths keeps its aarch64
// emulator only).
var builderPackages = []string{
	"bubblewrap", "busybox-static", "bzip2", "ca-certificates", "debootstrap", "dnf",
	"dosfstools", "e2fsprogs", "gdisk", "kiwi", "kpartx", "mount", "mtools",
	"openssh-client", "openssh-server", "parted", "qemu-user-static", "qemu-utils", "rpm", "rsync",
	"runc", "squashfs-tools", "tzdata", "util-linux", "xorriso", "xz-utils", "zstd", "zypper",
}

// builderDpkgPaths are dpkg path filters of the base: of
// qemu-user-static's thirty emulators (about 100 MB in the layer) only
// qemu-aarch64-static, the one an emulated aarch64 step registers.
var builderDpkgPaths = []string{
	"path-exclude=/usr/bin/qemu-*-static",
	"path-include=/usr/bin/qemu-aarch64-static",
}

// The Debian release the base is built from, and its default epoch: the
// time every file and the config say they were made, so that the image does
// not depend on when it was built.
const (
	builderSuite = "bookworm"
	builderEpoch = 1767225600 // 2026-01-01T00:00:00Z
)

var builderMirrors = []string{
	"deb http://deb.debian.org/debian bookworm main",
	"deb http://deb.debian.org/debian bookworm-updates main",
	"deb http://deb.debian.org/debian-security bookworm-security main",
}

func builderCmd(args []string) error {
	fs := flag.NewFlagSet("builder", flag.ExitOnError)
	out := fs.String("o", "bin/builder-image.tar", "the OCI layout tar to write")
	cacheDir := fs.String("cache", "", "where the Debian base layer is kept (default: the user cache dir)")
	bin := fs.String("imsbuild", "", "imsbuild binary to put in the image (default: built from this tree, static)")
	version := fs.String("version", "dev", "version of the imsbuild built from this tree")
	ref := fs.String("ref", "imsbuild.local/builder:latest", "image reference written in the layout's index")
	_ = fs.Parse(args)
	epoch := time.Unix(builderEpoch, 0).UTC()
	if os.Getenv("SOURCE_DATE_EPOCH") != "" {
		epoch = sourceDateEpoch()
	}
	if *cacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		*cacheDir = filepath.Join(d, "imsbuild", "builder-image")
	}
	base, err := baseLayer(*cacheDir, epoch)
	if err != nil {
		return err
	}
	if *bin == "" {
		tmp, err := os.MkdirTemp("", "imsbuild-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*bin = filepath.Join(tmp, "imsbuild")
		// Static and without paths or VCS stamps, so that the same tree
		// gives the same binary.
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
			"-ldflags", "-s -w -X main.version="+*version, "-o", *bin, "./cmd/imsbuild")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build imsbuild: %w", err)
		}
	}
	data, err := os.ReadFile(*bin)
	if err != nil {
		return err
	}
	top, err := ociimage.FilesLayer([]ociimage.File{{Path: "usr/local/bin/imsbuild", Mode: 0o755, Data: data}}, epoch)
	if err != nil {
		return err
	}
	img, err := ociimage.Image([]v1.Layer{base, top}, ociimage.Config{
		Epoch: epoch,
		Env:   []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:   []string{"/usr/local/bin/imsbuild"},
	})
	if err != nil {
		return err
	}
	return writeImage(*out, img, *ref)
}

// baseRecord is what the cache keeps beside a base layer, so that a later
// build need not read the layer to know its digests.
type baseRecord struct {
	Digest v1.Hash `json:"digest"` // of the gzipped layer
	DiffID v1.Hash `json:"diff_id"`
	Size   int64   `json:"size"`
}

// baseLayer returns the Debian base layer, from the cache when a build with
// the same release, mirrors, packages and epoch made it before (the slow
// part: mmdebstrap downloads and installs a few hundred packages).
func baseLayer(cacheDir string, epoch time.Time) (v1.Layer, error) {
	h := sha256.New()
	fmt.Fprintf(h, "imsbuild/builder-base/v1\n%s\n%d\n%s\n%s\n", builderSuite, epoch.Unix(),
		strings.Join(builderMirrors, "\n"), strings.Join(builderPackages, ","))
	for _, p := range builderDpkgPaths {
		fmt.Fprintf(h, "dpkg %s\n", p)
	}
	dir := filepath.Join(cacheDir, hex.EncodeToString(h.Sum(nil))[:16])
	rec, err := readBaseRecord(dir)
	if errors.Is(err, os.ErrNotExist) {
		rec, err = buildBase(dir, epoch)
	}
	if err != nil {
		return nil, err
	}
	return partial.CompressedToLayer(&cachedLayer{path: filepath.Join(dir, "layer.tar.gz"), rec: rec})
}

func readBaseRecord(dir string) (baseRecord, error) {
	var rec baseRecord
	b, err := os.ReadFile(filepath.Join(dir, "layer.json"))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("%s: %w", dir, err)
	}
	return rec, nil
}

// buildBase runs mmdebstrap into a tar, normalizes and gzips it into
// dir/layer.tar.gz and writes dir/layer.json last, as the mark of a
// complete entry.
func buildBase(dir string, epoch time.Time) (baseRecord, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return baseRecord{}, err
	}
	raw := filepath.Join(dir, "mmdebstrap.tar")
	defer os.Remove(raw)
	args := []string{"--mode=root", "--variant=apt", "--skip=output/dev", "--quiet",
		"--include=" + strings.Join(builderPackages, ",")}
	for _, p := range builderDpkgPaths {
		args = append(args, "--dpkgopt="+p)
	}
	args = append(args, builderSuite, raw)
	args = append(args, builderMirrors...)
	cmd := exec.Command("mmdebstrap", args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch.Unix()))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	fmt.Fprintln(os.Stderr, "imsbuild-image: building the Debian base with mmdebstrap (minutes; cached after)")
	if err := cmd.Run(); err != nil {
		return baseRecord{}, fmt.Errorf("mmdebstrap: %w", err)
	}
	in, err := os.Open(raw)
	if err != nil {
		return baseRecord{}, err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, ".layer-*")
	if err != nil {
		return baseRecord{}, err
	}
	defer os.Remove(tmp.Name())
	// digest hashes the gzipped bytes, diffID the tar inside them.
	digest, diffID := sha256.New(), sha256.New()
	counted := &countWriter{w: io.MultiWriter(tmp, digest)}
	zw, err := gzip.NewWriterLevel(counted, gzip.BestSpeed)
	if err != nil {
		return baseRecord{}, err
	}
	if err := ociimage.NormalizeTar(io.MultiWriter(zw, diffID), in, epoch); err != nil {
		return baseRecord{}, err
	}
	if err := zw.Close(); err != nil {
		return baseRecord{}, err
	}
	if err := tmp.Close(); err != nil {
		return baseRecord{}, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "layer.tar.gz")); err != nil {
		return baseRecord{}, err
	}
	rec := baseRecord{
		Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(digest.Sum(nil))},
		DiffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diffID.Sum(nil))},
		Size:   counted.n,
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return baseRecord{}, err
	}
	return rec, os.WriteFile(filepath.Join(dir, "layer.json"), b, 0o644)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// cachedLayer is a gzipped layer file whose digests the cache recorded.
type cachedLayer struct {
	path string
	rec  baseRecord
}

func (l *cachedLayer) Digest() (v1.Hash, error)            { return l.rec.Digest, nil }
func (l *cachedLayer) DiffID() (v1.Hash, error)            { return l.rec.DiffID, nil }
func (l *cachedLayer) Size() (int64, error)                { return l.rec.Size, nil }
func (l *cachedLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *cachedLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
