package engine

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imsbuild/imsbuild/builders/builderimage"
	"github.com/imsbuild/imsbuild/builders/customize"
	"github.com/imsbuild/imsbuild/builders/importer"
	"github.com/imsbuild/imsbuild/builders/pack"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/spec"
)

// errParentPending means a key cannot be known yet: a parent must build first.
var errParentPending = errors.New("parent not built yet")

// imagePreimage computes the key preimage of an image step. Parents must
// have results already (else errParentPending).
func (e *Engine) imagePreimage(ctx context.Context, s *Step) (*Preimage, error) {
	img := s.Image
	attrs, err := attrsOf(imageAttrs(img, s.Kind, e.interactive(s), isRemoteImport(img.Import)))
	if err != nil {
		return nil, err
	}
	p := &Preimage{
		Type:    "imsbuild/" + s.Kind + "/v1",
		Builder: BuilderVersion,
		Salt:    e.cfg.Settings.Cache.Salt,
		Attrs:   attrs,
		Inputs:  map[string]string{},
		Env:     e.allowedEnv(),
	}
	tools, err := e.toolVersions(ctx)
	if err != nil {
		return nil, err
	}
	p.Tools = tools
	for i, pem := range img.CACertificates {
		p.Inputs[fmt.Sprintf("ca_certificates[%d]", i)] = e.textDigest(pem)
	}
	switch s.Kind {
	case KindImport:
		d, err := e.importDigest(ctx, img.Import)
		if err != nil {
			return nil, fmt.Errorf("digest of import %s: %w", img.Import, err)
		}
		p.Inputs["import"] = d
	case KindCustomize:
		parent := s.Deps[0]
		r := e.result(parent.ID)
		if r == nil {
			return nil, errParentPending
		}
		p.Parent = parent.ID
		for name, o := range r.Outputs {
			p.Inputs["parent."+name] = string(o.Digest)
		}
	case KindKiwi:
		r := e.result(prepareID(s))
		if r == nil {
			return nil, errPreparePending
		}
		p.Inputs["prepared"] = string(r.Outputs[preparedOutput].Digest)
	}
	for _, c := range img.Customize {
		ck, err := customizeKeyOf(ctx, c, e.opts.StatCache, e.textDigest)
		if err != nil {
			return nil, err
		}
		if c.BuilderImage != "" {
			if ck.Builder, err = builderimage.Resolve(ctx, c.BuilderImage, builderimage.Options{}); err != nil {
				return nil, fmt.Errorf("builder image %s: %w", c.BuilderImage, err)
			}
		}
		p.Customize = append(p.Customize, ck)
	}
	return p, nil
}

// customizeKeyOf describes customize block c; textDigest digests its
// inline script.
func customizeKeyOf(ctx context.Context, c spec.Customize, sc *treehash.StatCache, textDigest func(string) string) (customizeKey, error) {
	k := customizeKey{Env: c.Env, Jail: c.Jail, Network: c.Network}
	if c.Timeout > 0 {
		k.Timeout = c.Timeout.String()
	}
	switch {
	case c.Script != "":
		d, err := treehash.File(ctx, c.Script, sc)
		if err != nil {
			return k, fmt.Errorf("digest of script %s: %w", c.Script, err)
		}
		k.Script = d
	case c.Inline != "":
		k.Script = textDigest(c.Inline)
	}
	if len(c.Files) > 0 {
		k.Files = map[string]string{}
		for _, f := range c.Files {
			d, err := treehash.File(ctx, f.Source, sc)
			if err != nil {
				return k, fmt.Errorf("digest of file %s: %w", f.Source, err)
			}
			if f.HasMode {
				d += " mode=" + spec.FormatMode(f.Mode)
			}
			if f.Owner != "" {
				d += " owner=" + f.Owner
			}
			k.Files[f.Dest] = d
		}
	}
	return k, nil
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// runImage builds an image step, or takes it from the cache.
func (e *Engine) runImage(ctx context.Context, s *Step) (cached bool, err error) {
	if s.Kind == KindKiwi {
		defer e.dropHandover(prepareID(s))
		if err := e.runPrepare(ctx, s); err != nil {
			return false, err
		}
	}
	pre, err := e.imagePreimage(ctx, s)
	if err != nil {
		return false, err
	}
	return e.runCached(ctx, s.ID, pre, s.ID+".log", e.cacheable(s), func(log io.Writer) (*cache.ActionResult, error) {
		return e.buildImage(ctx, s, log)
	})
}

// runCached gives step id a result for preimage pre: from the action cache
// when there and cacheable, else by build, whose output goes to the log
// file logName (kept) and to log events. The result is stored (blobs and
// log first, the action record last) and recorded for explain; an
// uncacheable result reaches the CAS but not the action cache. A build
// error comes back as a *StepError with the log's tail.
func (e *Engine) runCached(ctx context.Context, id string, pre *Preimage, logName string, cacheable bool, build func(io.Writer) (*cache.ActionResult, error)) (cached bool, err error) {
	e.seal(pre)
	key, canon, err := pre.Key()
	if err != nil {
		return false, err
	}
	unlock, err := e.ac.Lock(ctx, key)
	if err != nil {
		return false, fmt.Errorf("lock key %s: %w", key[:12], err)
	}
	defer unlock()
	if r, err := e.ac.Get(ctx, key); err == nil && cacheable {
		e.setResult(id, key, r)
		e.setLastKey(ctx, id, key, canon)
		e.emit(Event{Step: id, Status: StatusCached, Key: key})
		return true, nil
	} else if errors.Is(err, cache.ErrCorrupt) {
		// The cache dropped the corrupt blob and every result built on it;
		// the step is built again, which is worth saying.
		e.emit(Event{Step: id, Status: StatusLog, Line: fmt.Sprintf("cached result dropped, building again: %v", err)})
	} else if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return false, fmt.Errorf("action cache: %w", err)
	}

	e.emit(Event{Step: id, Status: StatusStarted, Key: key})
	logPath := filepath.Join(e.opts.LogDir, logName)
	lw, err := newStepLog(logPath, e.redact, func(line string) {
		e.emit(Event{Step: id, Status: StatusLog, Line: line})
	})
	if err != nil {
		return false, err
	}
	res, buildErr := build(lw)
	lw.Close()
	if buildErr != nil {
		return false, &StepError{Step: id, LogPath: logPath, LogTail: lw.Tail(), Err: buildErr}
	}
	if res.Log, _, err = e.store.PutFile(ctx, logPath); err != nil {
		return false, fmt.Errorf("store log: %w", err)
	}
	res.Step, res.Builder, res.Created = id, BuilderVersion, e.opts.Now().UTC()
	// The action result is written last: a cancelled or failed step leaves
	// blobs at most, never an entry that points at nothing.
	if cacheable {
		if err := e.ac.Put(ctx, key, canon, res); err != nil {
			return false, fmt.Errorf("record result: %w", err)
		}
		e.setLastKey(ctx, id, key, canon)
	}
	e.setResult(id, key, res)
	return false, nil
}

// buildImage makes the image root, customizes and packs it, and stores the
// artifacts. Scratch space is removed whatever happens.
func (e *Engine) buildImage(ctx context.Context, s *Step, log io.Writer) (*cache.ActionResult, error) {
	if err := os.MkdirAll(e.opts.WorkDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(e.opts.WorkDir, strings.ReplaceAll(s.ID, "/", "_")+"-")
	if err != nil {
		return nil, err
	}
	defer removeAll(e.opts.Logger, work)
	root := filepath.Join(work, "root")
	out := filepath.Join(work, "out")
	for _, d := range []string{root, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	img := s.Image
	switch s.Kind {
	case KindImport:
		fmt.Fprintf(log, "importing %s\n", img.Import)
		if isRemoteImport(img.Import) {
			arts, err := e.fetchRemote(ctx, img.Import, filepath.Join(work, "fetched"))
			if err != nil {
				return nil, err
			}
			if len(img.Customize) == 0 && len(img.CACertificates) == 0 && !e.interactive(s) {
				return e.storeArtifacts(ctx, arts, log) // as published: nothing to repack
			}
			if err := importer.Import(ctx, arts[ims.ArtifactRootfs], root); err != nil {
				return nil, err
			}
			break
		}
		if err := importer.Import(ctx, img.Import, root); err != nil {
			return nil, err
		}
	case KindCustomize:
		parent := e.result(s.Deps[0].ID)
		rootfs, ok := parent.Outputs["rootfs"]
		if !ok {
			return nil, fmt.Errorf("parent %s has no rootfs", s.Deps[0].ID)
		}
		fmt.Fprintf(log, "unpacking %s rootfs %s\n", s.Deps[0].ID, rootfs.Digest)
		if err := e.unpack(ctx, rootfs.Digest, work, root); err != nil {
			return nil, err
		}
	case KindKiwi:
		prepared := e.result(prepareID(s)).Outputs[preparedOutput]
		if e.takeHandover(prepareID(s), root) {
			fmt.Fprintf(log, "using the root kiwi just prepared (%s)\n", prepared.Digest)
			break
		}
		fmt.Fprintf(log, "unpacking the prepared root %s\n", prepared.Digest)
		if err := e.unpack(ctx, prepared.Digest, work, root); err != nil {
			return nil, err
		}
	}
	// A kiwi image's CA certificates went in during prepare.
	caCerts := img.CACertificates
	if s.Kind == KindKiwi {
		caCerts = nil
	}
	if len(img.Customize) > 0 || len(caCerts) > 0 {
		sb, err := e.sandbox()
		if err != nil {
			return nil, err // the sandbox package's errors say "sandbox" already
		}
		steps := img.Customize
		if len(caCerts) > 0 {
			caStep, err := caCertificatesStep(work, caCerts)
			if err != nil {
				return nil, err
			}
			steps = append(append([]spec.Customize(nil), steps...), caStep)
		}
		envFor := func(ctx context.Context, c spec.Customize) (customize.Environment, error) {
			if c.BuilderImage == "" {
				return customize.Environment{Sandbox: sb, ScriptDir: work}, nil
			}
			return e.builderEnv(ctx, c.BuilderImage, work)
		}
		if err := customize.ApplyIn(ctx, envFor, root, steps, envList(e.allowedEnv()), log); err != nil {
			if e.debugOnFailure(s) && ctx.Err() == nil {
				fmt.Fprintf(log, "customize failed: %v; opening the debug environment\n", err)
				if derr := e.sshEnv(ctx, s, root, true, log); derr != nil {
					fmt.Fprintf(log, "debug environment: %v\n", derr)
				}
			}
			return nil, err // the step fails even after a debug session
		}
	}
	if e.interactive(s) {
		if err := e.sshEnv(ctx, s, root, false, log); err != nil {
			return nil, err
		}
	}
	epoch, _ := e.sourceDateEpoch()
	arts, err := pack.Pack(ctx, root, out, pack.Options{
		Compression:      img.Squashfs.Compression,
		Level:            img.Squashfs.Level,
		BlockSize:        img.Squashfs.BlockSize,
		Exclude:          img.Squashfs.Exclude,
		SourceDateEpoch:  epoch,
		KernelFileName:   img.KernelFileName,
		InitrdFileName:   img.InitrdFileName,
		KernelParameters: img.KernelParameters,
		RequireBoot:      s.Kind == KindKiwi, // a recipe image is a boot image
		Env:              envList(e.allowedEnv()),
		Log:              log,
		Verbose:          quiet(log),
	})
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, a := range arts {
		files[a.Name] = a.Path
	}
	return e.storeArtifacts(ctx, files, log)
}

// storeArtifacts puts artifact files (name → path) into the CAS with their
// md5 (IMS manifests need it) and returns them as a step result.
func (e *Engine) storeArtifacts(ctx context.Context, files map[string]string, log io.Writer) (*cache.ActionResult, error) {
	res := &cache.ActionResult{Outputs: map[string]cache.Output{}}
	for _, name := range artifactOrder {
		path, ok := files[name]
		if !ok {
			continue
		}
		out, err := e.storeWithMD5(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", name, err)
		}
		out.MediaType = ims.MediaTypeOf(name)
		res.Outputs[name] = out
		fmt.Fprintf(log, "%s %s %d bytes\n", name, out.Digest, out.Size)
	}
	if _, ok := res.Outputs[ims.ArtifactRootfs]; !ok {
		return nil, errors.New("no rootfs artifact")
	}
	return res, nil
}

// storeWithMD5 copies a file into the CAS in one read pass: the store
// hashes sha256 while writing, md5 is computed beside it on another core.
func (e *Engine) storeWithMD5(ctx context.Context, path string) (cache.Output, error) {
	f, err := os.Open(path)
	if err != nil {
		return cache.Output{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	h := md5.New()
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(h, pr, make([]byte, 1<<20))
		pr.CloseWithError(err)
		done <- err
	}()
	d, size, err := e.store.Put(ctx, io.TeeReader(f, pw), "")
	pw.CloseWithError(err)
	if herr := <-done; err == nil && herr != nil && herr != io.ErrClosedPipe {
		err = herr
	}
	if err != nil {
		return cache.Output{}, err
	}
	return cache.Output{Digest: d, Size: size, MD5: hex.EncodeToString(h.Sum(nil))}, nil
}

// builderEnv unpacks an OCI builder image (cached by digest under the
// state dir) and runs steps in it with runc. The script and runc's bundle
// (whose config.json holds the script's environment) go to work, the
// step's private scratch directory, rather than /tmp.
func (e *Engine) builderEnv(ctx context.Context, ref, work string) (customize.Environment, error) {
	rootfs, _, err := builderimage.Unpack(ctx, ref, filepath.Join(e.opts.StateDir, "builders"), builderimage.Options{})
	if err != nil {
		return customize.Environment{}, fmt.Errorf("builder image %s: %w", ref, err)
	}
	if _, err := sandbox.Open(sandbox.BackendRunc); err != nil { // runc is there, we are root
		return customize.Environment{}, fmt.Errorf("builder image %s: %w", ref, err)
	}
	runc, err := exec.LookPath("runc")
	if err == nil {
		var sb sandbox.Sandbox
		if sb, err = sandbox.NewRunc(runc, sandbox.WithRuncStateDir(work)); err == nil {
			return customize.Environment{Sandbox: sb, BuilderRoot: rootfs, ScriptDir: work}, nil
		}
	}
	return customize.Environment{}, fmt.Errorf("builder image %s: %w", ref, err)
}

// unpack restores a squashfs blob into the empty directory root. The store
// verifies the blob first: unsquashfs must never read corrupt bytes into a
// root that gets cached. A store whose blobs are files lets unsquashfs read
// the blob in place.
func (e *Engine) unpack(ctx context.Context, d cache.Digest, work, root string) error {
	var err error
	if fu, ok := e.store.(cache.FileUser); ok {
		err = fu.UseFile(ctx, d, func(p string) error { return importer.Import(ctx, p, root) })
	} else {
		sq := filepath.Join(work, "unpack.squashfs")
		defer os.Remove(sq)
		if err = e.store.Materialize(ctx, d, sq, true); err == nil {
			err = importer.Import(ctx, sq, root)
		}
	}
	if errors.Is(err, cache.ErrCorrupt) {
		return fmt.Errorf("restore %s: %w (dropped with the results built on it: the next build makes it again)", d, err)
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", d, err)
	}
	return nil
}

// caCertificatesStep returns a jailed customize step that adds PEM
// certificates to the image trust store (Debian/SUSE layouts, or the bundle
// file itself when the image has no update-ca-certificates).
func caCertificatesStep(work string, pems []string) (spec.Customize, error) {
	dir := filepath.Join(work, "ca")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return spec.Customize{}, err
	}
	c := spec.Customize{Jail: true}
	for i, pem := range pems {
		name := fmt.Sprintf("imsbuild-ca-%d.crt", i)
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, []byte(pem), 0o644); err != nil {
			return c, err
		}
		c.Files = append(c.Files, spec.FileCopy{Dest: "/usr/local/share/ca-certificates/" + name, Source: src})
	}
	sort.Slice(c.Files, func(i, j int) bool { return c.Files[i].Dest < c.Files[j].Dest })
	c.Inline = `set -e
if command -v update-ca-certificates >/dev/null 2>&1; then
  if [ -d /etc/pki/trust/anchors ]; then cp /usr/local/share/ca-certificates/imsbuild-ca-*.crt /etc/pki/trust/anchors/; fi
  update-ca-certificates
else
  mkdir -p /etc/ssl/certs
  cat /usr/local/share/ca-certificates/imsbuild-ca-*.crt >> /etc/ssl/certs/ca-certificates.crt
fi
`
	return c, nil
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// setLastKey records key as id's last key for plan --explain. A failure
// costs only the explanation of the next change, so the build goes on, but
// it is logged.
func (e *Engine) setLastKey(ctx context.Context, id, key string, preimage []byte) {
	if err := e.ac.SetLastKey(ctx, id, key, preimage); err != nil {
		e.opts.Logger.Warn("record last key", "step", id, "key", key, "err", err)
	}
}

// quiet returns the writer of log for output too verbose for the console
// (see stepLog.Quiet), or nil when log has none.
func quiet(log io.Writer) io.Writer {
	if q, ok := log.(interface{ Quiet() io.Writer }); ok {
		return q.Quiet()
	}
	return nil
}
