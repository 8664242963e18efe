package steps

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/builders/customize"
	"github.com/imsbuild/imsbuild/builders/importer"
	"github.com/imsbuild/imsbuild/builders/normalize"
	"github.com/imsbuild/imsbuild/builders/pack"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/sbom"
	"github.com/imsbuild/imsbuild/spec"
)

// PreparedOutput names the prepared root in a Prepare step's outputs.
const PreparedOutput = "prepared-root"

// Image is an image step: import, customize (of a parent image) or kiwi
// (of a recipe, after its Prepare).
type Image struct {
	Kind  string // KindImport, KindCustomize or KindKiwi
	Image *spec.Image
	// Parent is the step the image builds on: the parent image
	// (customize) or the kiwi prepare (kiwi).
	Parent string
	// Interactive opens an SSH session on the root after the customize
	// blocks (Shell); the person's work is part of the result.
	Interactive bool
	// DebugOnFailure opens a debug session (Shell) when customize fails.
	DebugOnFailure bool
	// SourceDateEpoch, when EpochSet, is the build's SOURCE_DATE_EPOCH;
	// otherwise the image's epoch comes from its source (see BlobEpoch).
	SourceDateEpoch int64
	EpochSet        bool
	StateDir        string // builder images are unpacked under it

	// RemoteDigest identifies the published image (oci://, s3://) an
	// import names.
	RemoteDigest func(ctx context.Context, src string) (string, error)
	// FetchRemote downloads the artifacts of a published image (oci://,
	// s3://) into dst, by artifact name.
	FetchRemote func(ctx context.Context, src, dst string) (map[string]string, error)
	// Shell serves the SSH environment on root until the person is done;
	// debug marks one opened because a step failed.
	Shell func(ctx context.Context, root string, debug bool, log io.Writer) error
	// Handover holds the root a kiwi prepare just made, if any.
	Handover *Handover
	// UnpackParent makes a customize unpack its parent's rootfs even where
	// it could mount it under an overlay (mountParent): both give the same
	// result, and this is the way taken where mounts are not allowed.
	UnpackParent bool
}

// IsRemoteImport reports an import of published artifacts (oci://, s3://)
// rather than a root tree on disk.
func IsRemoteImport(src string) bool {
	return strings.HasPrefix(src, "oci://") || strings.HasPrefix(src, "s3://")
}

// imageKeyVersion is the version of an image step's key type by kind.
//
// v2: boot_parameters also comes from /boot/kernel-parameters and from the
// parent, so a v1 result of the same inputs may lack it.
// v3: every result has an SBOM output (ims.SBOMFile).
// v4: the root is normalized (builders/normalize) unless normalize =
// false, and packed at the epoch of the image's source (see BlobEpoch)
// rather than 0.
// v5 (import only): the digest of a directory imported by root covers its
// files' owners, which the import keeps (importer.SourceDigest): a v4 key
// named one image for every owner of the source's files. And a remote
// import reused as published has an SBOM, which v4 results lack.
func imageKeyVersion(kind string) string {
	if kind == KindImport {
		return "v5"
	}
	return "v4"
}

// Key describes the image: its attributes, its source (import digest,
// parent outputs or prepared root), CA certificates, customize blocks and
// the mksquashfs version.
func (o *Image) Key(ctx context.Context, k KeyEnv) (*Key, error) {
	img := o.Image
	key := &Key{
		Type:   "imsbuild/" + o.Kind + "/" + imageKeyVersion(o.Kind),
		Attrs:  imageAttrs(img, o.Kind, o.Interactive, IsRemoteImport(img.Import)),
		Inputs: map[string]string{},
	}
	v, err := k.ToolVersion(ctx, "mksquashfs", pack.ToolVersion)
	if err != nil {
		return nil, fmt.Errorf("mksquashfs version: %w", err)
	}
	key.Tools = map[string]string{"mksquashfs": v}
	if name, id, err := emulatorTool(ctx, k, img.Arch); err != nil {
		return nil, err
	} else if name != "" {
		key.Tools[name] = id
	}
	for i, pem := range img.CACertificates {
		key.Inputs[fmt.Sprintf("ca_certificates[%d]", i)] = k.TextDigest(pem)
	}
	switch o.Kind {
	case KindImport:
		d, err := k.Once("import:"+img.Import, func() (string, error) {
			if IsRemoteImport(img.Import) {
				return o.RemoteDigest(ctx, img.Import)
			}
			return importer.SourceDigest(ctx, img.Import, k.StatCache)
		})
		if err != nil {
			return nil, fmt.Errorf("digest of import %s: %w", img.Import, err)
		}
		key.Inputs["import"] = d
	case KindCustomize:
		r := k.Result(o.Parent)
		if r == nil {
			return nil, ErrParentPending
		}
		key.Parent = o.Parent
		for name, out := range r.Outputs {
			if name == ims.SBOMFile {
				continue // derived from the parent's rootfs, which is keyed
			}
			key.Inputs["parent."+name] = string(out.Digest)
		}
	case KindKiwi:
		r := k.Result(o.Parent)
		if r == nil {
			return nil, ErrParentPending
		}
		key.Inputs["prepared"] = string(r.Outputs[PreparedOutput].Digest)
	default:
		return nil, fmt.Errorf("image step of unknown kind %q", o.Kind)
	}
	for _, c := range img.Customize {
		ck, err := customizeKeyOf(ctx, c, img.Arch, k)
		if err != nil {
			return nil, err
		}
		key.Customize = append(key.Customize, ck)
	}
	return key, nil
}

// Build makes the image root, customizes and packs it, and stores the
// artifacts.
func (o *Image) Build(ctx context.Context, env Env) (*cache.ActionResult, error) {
	root := filepath.Join(env.Work, "root")
	out := filepath.Join(env.Work, "out")
	for _, d := range []string{root, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	img := o.Image
	// packed lets go of what the root needs no more once it is packed (a
	// customize's overlay, unmounted while the artifacts are stored).
	packed := func() {}
	// inherited is the boot_parameters of the image this one is made from,
	// packed again when the root has no /boot/kernel-parameters to pack.
	inherited := ""
	// epoch is the time of the source (see BlobEpoch).
	var epoch int64
	var err error
	switch o.Kind {
	case KindImport:
		fmt.Fprintf(env.Log, "importing %s\n", img.Import)
		if IsRemoteImport(img.Import) {
			arts, err := o.FetchRemote(ctx, img.Import, filepath.Join(env.Work, "fetched"))
			if err != nil {
				return nil, err
			}
			if len(img.Customize) == 0 && len(img.CACertificates) == 0 && !o.Interactive {
				// As published: nothing to repack, but an SBOM like
				// every image's, of the published rootfs.
				// Dated as its rootfs is (the artifacts stay as they
				// are), unless SOURCE_DATE_EPOCH says otherwise.
				if epoch, err = fileEpoch(arts[ims.ArtifactRootfs]); err != nil {
					return nil, err
				}
				if o.EpochSet {
					epoch = o.SourceDateEpoch
				}
				sbomPath := filepath.Join(env.Work, ims.SBOMFile)
				if err := o.writePackedSBOM(ctx, arts[ims.ArtifactRootfs], filepath.Join(env.Work, "sbom-root"), sbomPath, epoch, env.Log); err != nil {
					return nil, err
				}
				arts[ims.SBOMFile] = sbomPath
				return storeArtifacts(ctx, env.Store, arts, env.Log)
			}
			if err := importer.Import(ctx, arts[ims.ArtifactRootfs], root); err != nil {
				return nil, err
			}
			if epoch, err = fileEpoch(arts[ims.ArtifactRootfs]); err != nil {
				return nil, err
			}
			inherited = arts[ims.ArtifactBootParameters]
			break
		}
		if err := importer.Import(ctx, img.Import, root); err != nil {
			return nil, err
		}
		if kind, err := importer.Detect(img.Import); err == nil && kind == importer.KindSquashfs {
			if epoch, err = fileEpoch(img.Import); err != nil {
				return nil, err
			}
		}
	case KindCustomize:
		parent := env.Result(o.Parent)
		rootfs, ok := parent.Outputs[ims.ArtifactRootfs]
		if !ok {
			return nil, fmt.Errorf("parent %s has no rootfs", o.Parent)
		}
		// Only a squashfs that imsbuild packed goes to the kernel: one
		// imported as published (which has no SBOM) is unpacked.
		_, packedHere := parent.Outputs[ims.SBOMFile]
		mounted, err := o.mountParent(ctx, env, rootfs.Digest, packedHere)
		if err != nil {
			return nil, err
		}
		if mounted != nil {
			defer func() {
				if err := mounted.Close(); err != nil && env.Logger != nil {
					env.Logger.Warn("cleanup", "path", mounted.Path(), "err", err)
				}
			}()
			root = mounted.Path()
			packed = mounted.CloseLater
		} else {
			fmt.Fprintf(env.Log, "unpacking %s rootfs %s\n", o.Parent, rootfs.Digest)
			if err := unpack(ctx, env.Store, rootfs.Digest, env.Work, root); err != nil {
				return nil, err
			}
		}
		if epoch, err = BlobEpoch(ctx, env.Store, rootfs.Digest); err != nil {
			return nil, err
		}
		if bp, ok := parent.Outputs[ims.ArtifactBootParameters]; ok {
			inherited = filepath.Join(env.Work, "parent-"+ims.ArtifactBootParameters)
			if err := env.Store.Materialize(ctx, bp.Digest, inherited, true); err != nil {
				return nil, fmt.Errorf("restore %s of %s: %w", ims.ArtifactBootParameters, o.Parent, err)
			}
		}
	case KindKiwi:
		prepared := env.Result(o.Parent).Outputs[PreparedOutput]
		if epoch, err = BlobEpoch(ctx, env.Store, prepared.Digest); err != nil {
			return nil, err
		}
		if o.Handover.take(root) {
			fmt.Fprintf(env.Log, "using the root kiwi just prepared (%s)\n", prepared.Digest)
			break
		}
		fmt.Fprintf(env.Log, "unpacking the prepared root %s\n", prepared.Digest)
		if err := unpack(ctx, env.Store, prepared.Digest, env.Work, root); err != nil {
			return nil, err
		}
	}
	if err := o.customize(ctx, env, root); err != nil {
		return nil, err
	}
	if o.Interactive {
		if err := o.Shell(ctx, root, false, env.Log); err != nil {
			return nil, err
		}
	}
	if o.EpochSet {
		epoch = o.SourceDateEpoch
	}
	fmt.Fprintf(env.Log, "source date epoch %d (%s)\n", epoch, time.Unix(epoch, 0).UTC().Format(time.RFC3339))
	if !img.SkipNormalize {
		if err := normalize.Root(ctx, root, normalize.Options{Epoch: epoch, Log: env.Log}); err != nil {
			return nil, err
		}
	}
	sbomPath := filepath.Join(env.Work, ims.SBOMFile)
	if err := o.writeSBOM(ctx, root, sbomPath, epoch, env.Log); err != nil {
		return nil, err
	}
	arts, err := pack.Pack(ctx, root, out, pack.Options{
		Compression:         img.Squashfs.Compression,
		Level:               img.Squashfs.Level,
		BlockSize:           img.Squashfs.BlockSize,
		Exclude:             img.Squashfs.Exclude,
		SourceDateEpoch:     epoch,
		KernelFileName:      img.KernelFileName,
		InitrdFileName:      img.InitrdFileName,
		KernelParameters:    img.KernelParameters,
		InheritedParameters: inherited,
		RequireBoot:         o.Kind == KindKiwi, // a recipe image is a boot image
		Env:                 env.Environ,
		Log:                 env.Log,
		Verbose:             quiet(env.Log),
	})
	if err != nil {
		return nil, err
	}
	packed()
	files := map[string]string{}
	for _, a := range arts {
		files[a.Name] = a.Path
	}
	files[ims.SBOMFile] = sbomPath
	var keep func(cache.Digest)
	if root == filepath.Join(env.Work, "root") { // not a customize's overlay
		keep = o.keepTree(ctx, env, root, files[ims.ArtifactRootfs], epoch) // before the store takes the rootfs
	}
	res, err := storeArtifacts(ctx, env.Store, files, env.Log)
	if err != nil {
		return nil, err
	}
	if keep != nil {
		keep(res.Outputs[ims.ArtifactRootfs].Digest)
	}
	return res, nil
}

// sbomTool names the SBOM's creator without a version: the document is part
// of a cached result whose key does not hold imsbuild's version, so a
// rebuild by another release must give the same bytes.
const sbomTool = "imsbuild"

// writeSBOM writes the SPDX document of the finished root (after customize,
// before pack) to path. It is dated by the image's epoch like the rootfs, so a
// rebuild gives the same bytes; a root without a package database (busybox)
// gets a document without packages.
func (o *Image) writeSBOM(ctx context.Context, root, path string, epoch int64, log io.Writer) error {
	start := time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	doc := sbom.Document{Name: o.Image.Name, Created: time.Unix(epoch, 0).UTC(), Tool: sbomTool}
	err = sbom.Generate(ctx, root, doc, w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err // sbom's errors say "sbom" and the root
	}
	fmt.Fprintf(log, "sbom: scanned the root in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// writePackedSBOM writes the SPDX document of the squashfs rootfs sq to
// path, as writeSBOM does for a root tree: an image reused as published is
// not unpacked whole, only what the scan reads (sbom.Paths) is, into the
// new directory scratch. The entries of the doc directory come first, so
// that a package's doc directory that is a symlink to another's resolves.
// The document is the one a scan of the whole root gives.
func (o *Image) writePackedSBOM(ctx context.Context, sq, scratch, path string, epoch int64, log io.Writer) error {
	if sq == "" {
		return fmt.Errorf("sbom: no %s", ims.ArtifactRootfs)
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	defer os.RemoveAll(scratch)
	start := time.Now()
	doc := sbom.DocDir()
	if err := importer.ExtractSquashfs(ctx, sq, scratch, strings.Count(doc, "/")+2, doc); err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	if err := importer.ExtractSquashfs(ctx, sq, scratch, 0, sbom.Paths()...); err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	fmt.Fprintf(log, "sbom: extracted the package databases in %v\n", time.Since(start).Round(time.Millisecond))
	return o.writeSBOM(ctx, scratch, path, epoch, log)
}

// customize adds the CA certificates (a kiwi image's went in during
// prepare) and runs the customize blocks, in the sandbox or a builder
// image; a failure opens the debug session first when asked.
func (o *Image) customize(ctx context.Context, env Env, root string) error {
	img := o.Image
	caCerts := img.CACertificates
	if o.Kind == KindKiwi {
		caCerts = nil
	}
	if len(img.Customize) == 0 && len(caCerts) == 0 {
		return nil
	}
	if err := ensureEmulator(img.Arch, env.Log); err != nil {
		return err
	}
	sb, err := env.Sandbox()
	if err != nil {
		return err // the sandbox package's errors say "sandbox" already
	}
	blocks := img.Customize
	if len(caCerts) > 0 {
		caStep, err := caCertificatesStep(env.Work, caCerts)
		if err != nil {
			return err
		}
		blocks = append(append([]spec.Customize(nil), blocks...), caStep)
	}
	envFor := func(ctx context.Context, c spec.Customize) (customize.Environment, error) {
		if c.BuilderImage == "" {
			return customize.Environment{Sandbox: sb, ScriptDir: env.Work}, nil
		}
		return builderEnv(ctx, c.BuilderImage, img.Arch, o.StateDir, env.Work)
	}
	if err := customize.ApplyIn(ctx, envFor, root, blocks, env.Environ, env.Log); err != nil {
		if o.DebugOnFailure && ctx.Err() == nil {
			fmt.Fprintf(env.Log, "customize failed: %v; opening the debug environment\n", err)
			if derr := o.Shell(ctx, root, true, env.Log); derr != nil {
				fmt.Fprintf(env.Log, "debug environment: %v\n", derr)
			}
		}
		return err // the step fails even after a debug session
	}
	return nil
}

// The epoch of an image without SOURCE_DATE_EPOCH is that of its source,
// read from the squashfs superblock where pack recorded it (-mkfs-time):
// a kiwi image's is its prepared root's (the newest repository date the
// prepare saw, see Prepare), a customized image's its parent rootfs', an
// imported squashfs or published image's its own; an imported tree or tar
// has none and gets 0. So the epoch follows from content the key holds,
// and two builds of the same inputs agree on it.

// ErrNotSquashfs is a rootfs without a squashfs superblock.
var ErrNotSquashfs = pack.ErrNotSquashfs

// BlobEpoch returns the creation time of the squashfs blob d.
func BlobEpoch(ctx context.Context, store cache.Store, d cache.Digest) (int64, error) {
	rc, err := store.Open(ctx, d)
	if err != nil {
		return 0, fmt.Errorf("epoch of %s: %w", d, err)
	}
	defer rc.Close()
	t, err := pack.MkfsTime(rc)
	if err != nil {
		return 0, fmt.Errorf("epoch of %s: %w", d, err)
	}
	return t, nil
}

// fileEpoch returns the creation time of the squashfs file path.
func fileEpoch(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("epoch: %w", err)
	}
	defer f.Close()
	t, err := pack.MkfsTime(f)
	if err != nil {
		return 0, fmt.Errorf("epoch of %s: %w", path, err)
	}
	return t, nil
}
