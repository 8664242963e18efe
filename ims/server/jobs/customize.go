package jobs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/imsbuild/imsbuild/builders/sshenv"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/publish/dir"
	"github.com/imsbuild/imsbuild/spec"
)

// maxManifestSize bounds the manifest a job reads (IMS's link check: < 1 MiB).
const maxManifestSize = 1 << 20

// customizeLabel is the label of the image a customize job builds; the
// image's IMS name is the job's image_root_archive_name.
const customizeLabel = "customize"

// runCustomize runs an IMS customize job (SPEC §6) on the engine:
//
//   - fetching_image: the image record's manifest and rootfs come from S3,
//     the rootfs md5-checked against the object's md5sum metadata and the
//     manifest;
//   - waiting_on_user: an engine image that imports the rootfs opens an SSH
//     environment on the port Start gave the job (connection_info), in
//     IMS's layout (non-jailed: the image at /mnt/image/image-root, flags
//     /mnt/image/complete and /mnt/image/failed; jailed: /tmp/complete and
//     /tmp/failed), letting in only the job's public key as root;
//   - packaging_artifacts: once complete, the engine packs its own copy of
//     the root; publishImage creates the new ImageRecord first, uploads the
//     artifacts under <its id>/ and sets resultant_image_id.
//
// The failed file, a cancelled ctx (DELETE) or any error ends the job
// without an image record or objects; the parent image and its objects
// are never written.
func runCustomize(ctx context.Context, j *jobRun) error {
	// With an executor the SSH environment opens in the step's pod
	// (customizeHCL), reached through the Service the executor makes;
	// connection_info names it once the pod waits.
	remote := j.r.sshInPod(j.job)
	if len(j.job.SSHContainers) != 1 || (j.sshPort == 0 && !remote) {
		return fmt.Errorf("customize job: want one SSH container with a port, have %d containers, port %d", len(j.job.SSHContainers), j.sshPort)
	}
	parent, ok := j.store().Images.Get(j.job.ArtifactID)
	if !ok || parent.Link == nil || parent.Link.Path == "" {
		return fmt.Errorf("customize job: image %s has no record or no link", j.job.ArtifactID)
	}
	key, ok := j.store().PublicKeys.Get(j.job.PublicKeyID)
	if !ok {
		return fmt.Errorf("customize job: public key %s is gone", j.job.PublicKeyID)
	}
	work, release, err := j.workDir()
	if err != nil {
		return fmt.Errorf("customize job: %w", err)
	}
	defer release()

	if err := j.setStatus("fetching_image"); err != nil {
		return err
	}
	// The build directory holds only the build's inputs: a remote step
	// gets it whole.
	buildDir := filepath.Join(work, "build")
	if err := os.MkdirAll(buildDir, 0o755); err != nil {
		return fmt.Errorf("customize job: %w", err)
	}
	rootfs := filepath.Join(work, "image.sqsh")
	if remote {
		rootfs = filepath.Join(buildDir, customizeRootfs)
	}
	if err := fetchRootfs(ctx, j.blobs(), parent.Link.Path, rootfs); err != nil {
		return fmt.Errorf("fetch image %s: %w", parent.ID, err)
	}
	fmt.Fprintf(j.log, "fetched the rootfs of image %s (%s)\n", parent.ID, parent.Link.Path)

	names := customizeNames(j.job, parent)
	var cfg *spec.Config
	out := filepath.Join(work, "out")
	if remote {
		if cfg, err = loadCustomizeBuild(ctx, j.job, names, key.PublicKey, buildDir, work, j.caCerts()); err != nil {
			return fmt.Errorf("customize job: %w", err)
		}
		cfg.Settings.Cache.Dir = j.r.cfg.CacheDir
		out = filepath.Join(buildDir, createOut)
	} else {
		cfg = customizeConfig(j, names, rootfs, key.PublicKey, work, out)
		if err := addCA(cfg.Images[customizeLabel], j.caCerts(), work); err != nil {
			return fmt.Errorf("customize job: %w", err)
		}
	}
	st := &customizeStatus{j: j}
	eng, err := j.newEngine(cfg, work, st.event, func(o *engine.Options) {
		if remote {
			j.remote(o)
		}
		o.IMSLayout = true
		o.SSHEnv = sshEnv(j.job, names.arch)
	})
	if err != nil {
		return fmt.Errorf("customize job: %w", err)
	}
	if err := eng.Build(ctx, nil); err != nil {
		if errors.Is(err, sshenv.ErrFailed) || remote && strings.Contains(err.Error(), sshenv.ErrFailed.Error()) {
			return errors.New("customize job: the failed file was touched; no image")
		}
		return fmt.Errorf("customize job: %w", err) // no sensitive values in this build
	}
	if err := st.err(); err != nil {
		return err
	}
	manifests, _ := filepath.Glob(filepath.Join(out, dir.Bucket, "*", ims.ManifestFile))
	if len(manifests) != 1 {
		return fmt.Errorf("customize job: the build published %d images, want 1", len(manifests))
	}
	// The record first, the artifacts under its id, resultant_image_id.
	_, err = j.publishImage(ctx, filepath.Dir(manifests[0]), j.job.ImageRootArchiveName, names.arch)
	return err
}

// imageNames are the arch and the kernel and initrd file names of the
// image a customize job makes.
type imageNames struct{ arch, kernel, initrd string }

func customizeNames(job store.Job, parent store.Image) imageNames {
	n := imageNames{arch: job.Arch, kernel: job.KernelFileName, initrd: job.InitrdFileName}
	if n.kernel == "" {
		n.kernel = "vmlinuz"
	}
	if n.initrd == "" {
		n.initrd = "initrd"
	}
	if n.arch == "" { // copied from the image record at POST
		n.arch = parent.Arch
	}
	if n.arch == "" {
		n.arch = "x86_64"
	}
	return n
}

// customizeConfig is the build of a customize job: one image importing
// rootfs, with an interactive block for the job's SSH container, and a dir
// publish (under out) to take the packed artifacts from. Nothing from the
// request becomes HCL: the config is built directly.
func customizeConfig(j *jobRun, names imageNames, rootfs, publicKey, work, out string) *spec.Config {
	cfg := &spec.Config{
		Dir: work,
		Images: map[string]*spec.Image{customizeLabel: {
			Label: customizeLabel, Name: j.job.ImageRootArchiveName, Arch: names.arch,
			Import: rootfs, KernelFileName: names.kernel, InitrdFileName: names.initrd,
			// package_and_upload.sh runs mksquashfs without flags: gzip,
			// 128 KiB blocks.
			Squashfs: spec.Squashfs{Compression: "gzip", BlockSize: 128 << 10},
			Interactive: &spec.Interactive{
				PublicKeys: []string{strings.TrimSpace(publicKey)},
				Listen:     j.sshListen(),
				Jail:       j.job.SSHContainers[0].Jail,
				Network:    true, // an IMS job pod has the network
				// Timeout 0: IMS waits for the user without a limit.
			},
		}},
		Publishes: []*spec.Publish{{Kind: "dir", Name: "job", Images: []string{customizeLabel}, Path: out}},
	}
	cfg.Settings.Cache.Dir = j.r.cfg.CacheDir
	return cfg
}

// caFile is where IMS's sidecars (create and customize) copy the CA
// (/etc/cray/ca) into the image.
const caFile = "/etc/cray/ca/certificate_authority.crt"

// caSource is the file in the build directory that addCA copies to caFile.
const caSource = "certificate_authority.crt"

// writeCA writes the certificates pems into dir/caSource.
func writeCA(pems []string, dir string) error {
	var all strings.Builder
	for _, p := range pems {
		all.WriteString(strings.TrimRight(p, "\n") + "\n")
	}
	return os.WriteFile(filepath.Join(dir, caSource), []byte(all.String()), 0o644)
}

// addCA copies the --ca-cert certificates into the image at caFile, as
// IMS's sidecar does: for a customize job before the SSH environment
// opens, and not into the trust store (a create job's also go there,
// through the image's CACertificates).
func addCA(img *spec.Image, pems []string, work string) error {
	if len(pems) == 0 {
		return nil
	}
	if err := writeCA(pems, work); err != nil {
		return err
	}
	src := filepath.Join(work, caSource)
	img.Customize = append(img.Customize, spec.Customize{
		Jail: true, Inline: ":", // the copy is the whole step
		Files: []spec.FileCopy{{Dest: caFile, Source: src, Mode: 0o644, HasMode: true}},
	})
	return nil
}

// sshEnv is what IMS's sshd adds to every session (SetEnv): the job id,
// the arch, whether DKMS is on (Python's bool text, as IMS's job template
// renders it) and the remote build node (none).
func sshEnv(job store.Job, arch string) []string {
	dkms := "False"
	if job.RequireDKMS {
		dkms = "True"
	}
	return []string{"IMS_JOB_ID=" + job.ID, "IMS_ARCH=" + arch, "IMS_DKMS_ENABLED=" + dkms, "REMOTE_BUILD_NODE="}
}

// customizeStatus follows the engine's events into IMS statuses: the SSH
// environment listening is waiting_on_user; its completion (the step goes
// on to pack) is packaging_artifacts.
type customizeStatus struct {
	j *jobRun

	mu       sync.Mutex
	waiting  bool
	packing  bool
	firstErr error
}

func (c *customizeStatus) event(ev engine.Event) {
	if ev.Step != "image."+customizeLabel {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case ev.Status == engine.StatusWaiting && ev.SSH != nil && ev.SSH.Service != "" && !c.packing:
		// In the step's pod (Config.Executor): connection_info and
		// kubernetes_service name the Service the executor made, as
		// IMS's name its job's; again for a retried pod's new Service.
		c.record(ev.SSH)
		if !c.waiting {
			c.waiting = true
			c.set("waiting_on_user")
		}
	case ev.Status == engine.StatusWaiting && !c.waiting:
		c.waiting = true
		c.set("waiting_on_user")
	case ev.Status == engine.StatusResumed && c.waiting && !c.packing:
		c.packing = true
		c.set("packaging_artifacts")
	}
}

func (c *customizeStatus) record(info *engine.SSHInfo) {
	if err := c.j.recordService(info); err != nil && c.firstErr == nil {
		c.firstErr = err
	}
}

// err returns the first status update that failed.
func (c *customizeStatus) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstErr
}

func (c *customizeStatus) set(status string) {
	if err := c.j.setStatus(status); err != nil && c.firstErr == nil {
		c.firstErr = err
	}
}

// fetchRootfs downloads the rootfs the manifest at manifestURL lists to
// path, checking its md5 against the object's md5sum metadata (what IMS
// checks) and the manifest's md5.
func fetchRootfs(ctx context.Context, blobs *blob.Store, manifestURL, path string) error {
	bucket, key, err := blob.ParseURL(manifestURL)
	if err != nil {
		return err
	}
	data, err := blobs.Read(ctx, bucket, key, maxManifestSize)
	if err != nil {
		return err
	}
	m, err := ims.ParseManifest(data)
	if err != nil {
		return fmt.Errorf("%s: %w", manifestURL, err)
	}
	var art ims.Artifact
	for _, a := range m.Artifacts {
		if strings.HasPrefix(a.Type, ims.MediaTypeRootfs) {
			art = a
		}
	}
	rb, rk, err := blob.ParseURL(art.Link.Path)
	if err != nil {
		return fmt.Errorf("rootfs link: %w", err)
	}
	body, info, err := blobs.Get(ctx, rb, rk)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := md5.New()
	_, err = io.Copy(f, io.TeeReader(body, h))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", art.Link.Path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	for what, want := range map[string]string{"md5sum metadata": info.Metadata["md5sum"], "manifest md5": art.MD5} {
		if want != "" && !strings.EqualFold(want, got) {
			return fmt.Errorf("%s: md5 %s, the %s says %s", art.Link.Path, got, what, want)
		}
	}
	return nil
}
