package jobs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/builders/sshenv"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/spec"
)

// maxManifestSize bounds the manifest a job reads (IMS's link check: < 1 MiB).
const maxManifestSize = 1 << 20

// cleanupTimeout bounds the removal of a half-published image.
const cleanupTimeout = 30 * time.Second

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
//     the root; the new ImageRecord is created first and the artifacts are
//     uploaded under <its id>/, then resultant_image_id is set.
//
// The failed file, a cancelled ctx (DELETE) or any error ends the job
// without an image record or objects; the parent image and its objects
// are never written.
func runCustomize(ctx context.Context, j *jobRun) error {
	if len(j.job.SSHContainers) != 1 || j.sshPort == 0 {
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
	rootfs := filepath.Join(work, "image.sqsh")
	if err := fetchRootfs(ctx, j.blobs(), parent.Link.Path, rootfs); err != nil {
		return fmt.Errorf("fetch image %s: %w", parent.ID, err)
	}
	fmt.Fprintf(j.log, "fetched the rootfs of image %s (%s)\n", parent.ID, parent.Link.Path)

	out := filepath.Join(work, "out")
	cfg := customizeConfig(j, parent, rootfs, key.PublicKey, work, out)
	st := &customizeStatus{j: j}
	eng, err := j.newEngine(cfg, work, st.event, func(o *engine.Options) {
		o.IMSLayout = true
		o.SSHEnv = sshEnv(j.job, cfg.Images[customizeLabel].Arch)
	})
	if err != nil {
		return fmt.Errorf("customize job: %w", err)
	}
	if err := eng.Build(ctx, nil); err != nil {
		if errors.Is(err, sshenv.ErrFailed) {
			return errors.New("customize job: the failed file was touched; no image")
		}
		return fmt.Errorf("customize job: %w", err)
	}
	if err := st.packaging(); err != nil {
		return err
	}
	dir, err := builtImageDir(out)
	if err != nil {
		return fmt.Errorf("customize job: %w", err)
	}
	id, err := uploadImage(ctx, j, dir, j.job.ImageRootArchiveName, parent.Arch)
	if err != nil {
		return err
	}
	fmt.Fprintf(j.log, "image %s published under s3://%s/%s/\n", id, j.imageBucket(), id)
	return j.update(func(rec *store.Job) { rec.ResultantImageID = &id })
}

// customizeConfig is the build of a customize job: one image importing
// rootfs, with an interactive block for the job's SSH container, and a dir
// publish (under out) to take the packed artifacts from. Nothing from the
// request becomes HCL: the config is built directly.
func customizeConfig(j *jobRun, parent store.Image, rootfs, publicKey, work, out string) *spec.Config {
	kernel := j.job.KernelFileName
	if kernel == "" {
		kernel = "vmlinuz"
	}
	initrd := j.job.InitrdFileName
	if initrd == "" {
		initrd = "initrd"
	}
	arch := parent.Arch
	if arch == "" {
		arch = "x86_64"
	}
	cfg := &spec.Config{
		Dir: work,
		Images: map[string]*spec.Image{customizeLabel: {
			Label: customizeLabel, Name: j.job.ImageRootArchiveName, Arch: arch,
			Import: rootfs, KernelFileName: kernel, InitrdFileName: initrd,
			// package_and_upload.sh runs mksquashfs without flags: gzip,
			// 128 KiB blocks.
			Squashfs: spec.Squashfs{Compression: "gzip", BlockSize: 128 << 10},
			Interactive: &spec.Interactive{
				PublicKeys: []string{strings.TrimSpace(publicKey)},
				Listen:     net.JoinHostPort(listenHost(j.sshHost), strconv.Itoa(j.sshPort)),
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
// environment listening is waiting_on_user; the image step's next event
// (packing) is packaging_artifacts.
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
	case ev.Status == engine.StatusWaiting && !c.waiting:
		c.waiting = true
		c.set("waiting_on_user")
	case c.waiting && !c.packing && ev.Status != engine.StatusWaiting && ev.Status != engine.StatusFailed:
		c.packing = true
		c.set("packaging_artifacts")
	}
}

// packaging sets packaging_artifacts unless an event did already, and
// returns the first status update that failed.
func (c *customizeStatus) packaging() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.packing {
		c.packing = true
		c.set("packaging_artifacts")
	}
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

// builtImageDir is the one image directory a dir publish wrote under out.
func builtImageDir(out string) (string, error) {
	base := filepath.Join(out, "boot-images")
	ents, err := os.ReadDir(base)
	if err != nil {
		return "", fmt.Errorf("built image: %w", err)
	}
	var dirs []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) != 1 {
		return "", fmt.Errorf("built image: %d image directories in %s, want 1", len(dirs), base)
	}
	return filepath.Join(base, dirs[0]), nil
}

// artifactOrder is the order IMS's upload_artifacts writes artifacts in.
var artifactOrder = []string{ims.ArtifactRootfs, ims.ArtifactKernel, ims.ArtifactInitrd, ims.ArtifactBootParameters}

// uploadImage publishes the artifacts in dir as a new IMS image the way
// IMS's upload_artifacts does: the ImageRecord first, then each artifact
// under <id>/ with its md5sum and x-shasta-ims-* metadata, then
// manifest.json, then the record's link. On failure the record and every
// object it wrote are removed again. It returns the new image's id.
func uploadImage(ctx context.Context, j *jobRun, dir, name, arch string) (id string, err error) {
	id = uuid.NewString()
	rec := store.Image{ID: id, Created: imsTimestamp(j.now()), Name: name, Arch: arch, Metadata: map[string]string{}}
	if err := j.store().Images.Put(rec); err != nil {
		return "", fmt.Errorf("create image record: %w", err)
	}
	bucket := j.imageBucket()
	var written []string
	defer func() {
		if err == nil {
			return
		}
		// Undo with a context of its own: ctx may be what ended it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		for _, k := range written {
			if derr := j.blobs().Delete(cctx, bucket, k); derr != nil {
				fmt.Fprintf(j.log, "remove s3://%s/%s: %v\n", bucket, k, derr)
			}
		}
		if derr := j.store().Images.Remove(id); derr != nil {
			fmt.Fprintf(j.log, "remove image record %s: %v\n", id, derr)
		}
	}()
	meta := map[string]string{"x-shasta-ims-image-name": name, "x-shasta-ims-image-id": id, "x-shasta-ims-job-id": j.job.ID}
	var arts []map[string]any
	for _, a := range artifactOrder {
		p := filepath.Join(dir, a)
		if _, serr := os.Stat(p); errors.Is(serr, os.ErrNotExist) {
			continue
		}
		k := id + "/" + a
		written = append(written, k)
		sum, etag, err := uploadFile(ctx, j.blobs(), bucket, k, p, ims.MediaTypeOf(a), meta)
		if err != nil {
			return "", err
		}
		arts = append(arts, map[string]any{
			"link": map[string]any{"path": blob.URL(bucket, k), "etag": etag, "type": "s3"},
			"md5":  sum, "type": ims.MediaTypeOf(a),
		})
	}
	// json.dump(sort_keys=True, indent=4), created as str(datetime.now()).
	manifest, err := json.MarshalIndent(map[string]any{
		"artifacts": arts, "created": j.now().UTC().Format("2006-01-02 15:04:05.000000"), "version": ims.ManifestVersion,
	}, "", "    ")
	if err != nil {
		return "", err
	}
	if _, err := ims.ParseManifest(manifest); err != nil {
		return "", fmt.Errorf("image %s: %w", id, err)
	}
	mk := id + "/" + ims.ManifestFile
	written = append(written, mk)
	sum := md5.Sum(manifest)
	if err := j.blobs().Upload(ctx, bucket, mk, strings.NewReader(string(manifest)), int64(len(manifest)),
		ims.MediaTypeManifest, map[string]string{"md5sum": hex.EncodeToString(sum[:])}); err != nil {
		return "", err
	}
	info, err := j.blobs().Head(ctx, bucket, mk)
	if err != nil {
		return "", err
	}
	err = j.store().Images.Update(func(tx store.Tx[store.Image]) error {
		r, ok := tx.Get(id)
		if !ok {
			return fmt.Errorf("image record %s was deleted during the upload", id)
		}
		r.Link = &store.Link{Path: blob.URL(bucket, mk), Etag: info.ETag, Type: "s3"}
		return tx.Put(r)
	})
	if err != nil {
		return "", fmt.Errorf("link image record: %w", err)
	}
	return id, nil
}

// uploadFile uploads the file at path with its md5 as md5sum metadata and
// returns the md5 and the object's ETag. The md5 is computed first (a
// read of the file), because S3 metadata is sent before the body.
func uploadFile(ctx context.Context, blobs *blob.Store, bucket, key, path, contentType string, meta map[string]string) (sum, etag string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", "", fmt.Errorf("md5 %s: %w", path, err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	m := map[string]string{"md5sum": sum}
	for k, v := range meta {
		m[k] = v
	}
	if err := blobs.Upload(ctx, bucket, key, f, n, contentType, m); err != nil {
		return "", "", err
	}
	info, err := blobs.Head(ctx, bucket, key)
	if err != nil {
		return "", "", err
	}
	return sum, info.ETag, nil
}

// imsTimestamp formats t as IMS's records do: naive ISO 8601, microseconds
// left out when zero (Python's datetime.isoformat).
func imsTimestamp(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04:05.000000")
}
