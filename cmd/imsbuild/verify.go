package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/ctxio"
	"github.com/imsbuild/imsbuild/provenance"
	"github.com/imsbuild/imsbuild/publish/oci"
	"github.com/imsbuild/imsbuild/publish/s3"
)

func newVerifyCmd(g *globalFlags) *cobra.Command {
	var keyFile, policyFile string
	cmd := &cobra.Command{
		Use:   "verify --key PUBLIC_KEY [--policy FILE] DIR | s3://BUCKET/PREFIX/ID | oci://REGISTRY/REPO:TAG | [BUILD_DIR] IMAGE",
		Short: "Check an image's signed provenance: signature, artifact digests, builder and inputs",
		Long: `verify checks the signed SLSA provenance (provenance.intoto.jsonl) that a build with a
signing key writes beside every image:

  1. a signature of the DSSE envelope verifies with the public key --key (PEM, as
     cosign.pub; ed25519 or ECDSA P-256) — nothing in it is trusted before that;
  2. every subject of the statement (rootfs, kernel, initrd, boot_parameters,
     sbom.spdx.json) is there, and its sha256, read from the artifact's bytes, is the
     signed one; every artifact present is a subject;
  3. with --policy FILE, the builder id is an accepted one and the resolved dependencies
     (recipe tree, repository metadata, parent image, builder image) have the expected
     digests. The policy is JSON:

       {"builder_ids": ["https://github.com/imsbuild/imsbuild@0.1.0"],
        "dependencies": {"recipe.node": "sha256:…", "image.base": "sha256:…"}}

The image is a directory (a published boot-images/<id>/, or any directory holding
provenance.intoto.jsonl and the artifacts), a published S3 image s3://bucket/prefix/<id>
(with ?endpoint=…&path_style=true as for imports; credentials from the AWS environment),
an image pushed by publish "oci", oci://registry/repo:tag or @sha256:… (its provenance is
cosign's attestation or a referrer; its artifacts are the manifest's layers; plain HTTP
only to a loopback registry unless ?insecure=true), or an image of a build (image.x, or x) taken from its cache as the build files say now.

It prints what was verified: the subjects, the builder and the dependencies.
Exit codes: 0 verified, 1 not verified (bad signature, changed artifact, policy
violation, no provenance), 2 usage (flags, an unreadable key or policy).`,
		Example: `  imsbuild verify --key cosign.pub examples/busybox/out/boot-images/<id>
  imsbuild verify --key cosign.pub --policy policy.json 's3://boot-images/<id>?endpoint=http://127.0.0.1:7070&path_style=true'
  imsbuild verify --key cosign.pub oci://registry.example/hpc/busybox-compute:nightly
  imsbuild verify --key cosign.pub examples/busybox image.compute
  imsbuild verify --json --key cosign.pub out/boot-images/<id>
  cosign verify-blob-attestation --key cosign.pub --insecure-ignore-tlog \
      --type slsaprovenance1 --signature out/boot-images/<id>/provenance.intoto.jsonl out/boot-images/<id>/rootfs`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return usageError{errors.New("verify: --key PUBLIC_KEY is required")}
			}
			pub, err := readPublicKey(keyFile)
			if err != nil {
				return usageError{err}
			}
			var policy *provenance.Policy
			if policyFile != "" {
				if policy, err = readPolicy(policyFile); err != nil {
					return usageError{err}
				}
			}
			ctx := cmd.Context()
			target := args[len(args)-1]
			src, err := openTarget(ctx, g, args)
			if err != nil {
				return err
			}
			rep := verifyReport{Target: target}
			v, err := src.verify(ctx, pub)
			if err == nil && policy != nil {
				err = v.Check(*policy)
			}
			var ue usageError
			var re reportedError
			if errors.As(err, &ue) || errors.As(err, &re) || ctx.Err() != nil {
				return err // the build could not be loaded, or the command was cancelled
			}
			if err != nil {
				rep.Error = err.Error()
				if writeErr := rep.write(cmd.OutOrStdout(), g.json); writeErr != nil {
					return writeErr
				}
				if !g.json {
					fmt.Fprintln(os.Stderr, "imsbuild verify:", printable(err.Error()))
				}
				return reportedError{exitFailed}
			}
			rep.fill(v, keyFile, pub, policy != nil)
			return rep.write(cmd.OutOrStdout(), g.json)
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the public key (PEM) the provenance must be signed with (required)")
	cmd.Flags().StringVar(&policyFile, "policy", "", "a JSON policy: accepted builder_ids and expected dependencies digests")
	return cmd
}

// A verifySource is an image with its provenance envelope.
type verifySource interface {
	verify(ctx context.Context, pub crypto.PublicKey) (*provenance.Verified, error)
}

// openTarget finds what args name: a directory with a provenance, a remote
// image (s3://, oci://), or an image of a build.
func openTarget(ctx context.Context, g *globalFlags, args []string) (verifySource, error) {
	target := args[len(args)-1]
	if scheme, _, ok := strings.Cut(target, "://"); ok {
		if len(args) > 1 {
			return nil, usageError{fmt.Errorf("verify %s: a remote image takes no build directory", target)}
		}
		src, err := remoteImage(scheme, target)
		if err != nil {
			return nil, usageError{err}
		}
		return src, nil
	}
	if len(args) == 1 {
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			return dirSource(target), nil
		}
	}
	dir := "."
	if len(args) == 2 {
		dir = args[0]
	}
	return &imageSource{g: g, dir: dir, image: target}, nil
}

// A fetchFunc returns the provenance envelope of a published image and the
// sha256 digests of its artifacts by name, computed from their bytes.
type fetchFunc func(ctx context.Context, url string) (envelope []byte, artifacts map[string]digest.Digest, err error)

// remoteImage returns the published image at url, by its scheme. An
// oci:// image joins as a verifySource whose verify fetches the image's
// attached provenance (publish/oci FetchProvenance) and checks it
// (Provenance.Verify).
func remoteImage(scheme, url string) (verifySource, error) {
	switch scheme {
	case "s3":
		return remoteSource{url: url, fetch: fetchS3}, nil
	case "oci":
		return ociSource(url), nil
	}
	return nil, fmt.Errorf("verify %s://: unknown scheme; want a directory, s3://, or an image of a build", scheme)
}

// dirSource is a directory holding provenance.intoto.jsonl and artifacts.
type dirSource string

func (d dirSource) verify(ctx context.Context, pub crypto.PublicKey) (*provenance.Verified, error) {
	env, err := readEnvelope(filepath.Join(string(d), ims.ProvenanceFile))
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, name := range subjectNames() {
		p := filepath.Join(string(d), name)
		if _, err := os.Lstat(p); err == nil {
			files[name] = p
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no artifacts beside the provenance", d)
	}
	v, err := provenance.Verify(ctx, env, pub, files)
	if err != nil {
		return nil, err
	}
	return v, allSubjects(v, files, string(d))
}

// ociSource is an image in a registry, oci://registry/repo:tag or
// @sha256:…, with ?insecure=true for plain HTTP to a registry that is not
// on loopback. Its provenance is cosign's attestation or a referrer of the
// image manifest; the artifacts are the manifest's layers, whose digests
// name the bytes a pull gets (and checks).
type ociSource string

func (o ociSource) verify(ctx context.Context, pub crypto.PublicKey) (*provenance.Verified, error) {
	ref, query, _ := strings.Cut(strings.TrimPrefix(string(o), "oci://"), "?")
	insecure := false
	switch query {
	case "":
	case "insecure=true":
		insecure = true
	default:
		return nil, usageError{fmt.Errorf("verify %s: unknown query %q; want ?insecure=true or none", o, query)}
	}
	prov, err := oci.FetchProvenance(ctx, ref, insecure)
	if errors.Is(err, oci.ErrNoProvenance) {
		return nil, fmt.Errorf("%s: %w", o, engine.ErrNoProvenance)
	}
	if err != nil {
		return nil, err
	}
	v, err := prov.Verify(ctx, pub)
	if errors.Is(err, oci.ErrNoProvenance) {
		return nil, fmt.Errorf("%s: %w", o, engine.ErrNoProvenance)
	}
	if err != nil {
		return nil, err
	}
	// The SBOM is a referrer, not a layer, and a signing publisher adds
	// the image manifest as a subject (cosign wants it): both count as
	// present; any other subject must be a layer.
	have := maps.Clone(prov.Artifacts)
	_, imageDigest, _ := strings.Cut(prov.Image, "@")
	for _, sub := range v.Statement.GetSubject() {
		if sub.GetName() == ims.SBOMFile || "sha256:"+sub.GetDigest()["sha256"] == imageDigest {
			have[sub.GetName()] = ""
		}
	}
	return v, allSubjects(v, have, prov.Image)
}

// remoteSource is a published image fetched by URL.
type remoteSource struct {
	url   string
	fetch fetchFunc
}

func (r remoteSource) verify(ctx context.Context, pub crypto.PublicKey) (*provenance.Verified, error) {
	env, arts, err := r.fetch(ctx, r.url)
	if err != nil {
		return nil, err
	}
	v, err := provenance.VerifyDigests(ctx, env, pub, arts)
	if err != nil {
		return nil, err
	}
	return v, allSubjects(v, arts, r.url)
}

// fetchS3 downloads an image published to S3 (s3://bucket/prefix/<id>, the
// folder of its manifest.json) into a temp directory: the manifest's
// artifacts, the SBOM and the provenance, each hashed while it streams.
func fetchS3(ctx context.Context, url string) ([]byte, map[string]digest.Digest, error) {
	base, query, _ := strings.Cut(url, "?")
	base = strings.TrimSuffix(strings.TrimSuffix(base, "/"), "/"+ims.ManifestFile)
	if query != "" {
		query = "?" + query
	}
	tmp, err := os.MkdirTemp("", "imsbuild-verify-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)
	arts, _, err := s3.Fetch(ctx, s3.Config{}, base+"/"+ims.ManifestFile+query, tmp)
	if err != nil {
		return nil, nil, err
	}
	digests := map[string]digest.Digest{}
	for name, a := range arts {
		digests[name] = digest.Digest(a.SHA256)
	}
	envPath := filepath.Join(tmp, ims.ProvenanceFile)
	if _, err := s3.Download(ctx, s3.Config{}, base+"/"+ims.ProvenanceFile+query, envPath, ""); errors.Is(err, s3.ErrNotFound) {
		return nil, nil, fmt.Errorf("%s: %w", base, engine.ErrNoProvenance)
	} else if err != nil {
		return nil, nil, err
	}
	env, err := readEnvelope(envPath)
	if err != nil {
		return nil, nil, err
	}
	sb, err := s3.Download(ctx, s3.Config{}, base+"/"+ims.SBOMFile+query, filepath.Join(tmp, ims.SBOMFile), "")
	switch {
	case err == nil:
		digests[ims.SBOMFile] = digest.Digest(sb.SHA256)
	case !errors.Is(err, s3.ErrNotFound):
		return nil, nil, err
	}
	return env, digests, nil
}

// imageSource is an image of a build, from its cache.
type imageSource struct {
	g          *globalFlags
	dir, image string
}

func (s *imageSource) verify(ctx context.Context, pub crypto.PublicKey) (*provenance.Verified, error) {
	cfg, c, _, err := loadBuild(ctx, s.g, []string{s.dir})
	if err != nil {
		return nil, err
	}
	defer c.close()
	e, err := newEngine(cfg, c, engine.Options{})
	if err != nil {
		return nil, err
	}
	store, _ := c.stores()
	img, err := e.Cached(ctx, s.image)
	if err != nil {
		return nil, targetError(err, e.Redact)
	}
	env, err := readBlob(ctx, store, img.Provenance.Digest, provenance.MaxEnvelope)
	if err != nil {
		return nil, fmt.Errorf("%s: provenance: %w", img.Step, err)
	}
	digests := map[string]digest.Digest{}
	for _, name := range subjectNames() {
		o, ok := img.Outputs[name]
		if !ok {
			continue
		}
		d, err := blobDigest(ctx, store, o.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", img.Step, name, err)
		}
		digests[name] = d
	}
	v, err := provenance.VerifyDigests(ctx, env, pub, digests)
	if err != nil {
		return nil, err
	}
	return v, allSubjects(v, digests, img.Step)
}

// subjectNames are the artifacts a provenance may name.
func subjectNames() []string { return append(ims.ArtifactNames(), ims.SBOMFile) }

// allSubjects fails when a subject of v has no artifact in have: a
// provenance vouches for all of its subjects, and an image missing one is
// not the image that was signed.
func allSubjects[T any](v *provenance.Verified, have map[string]T, where string) error {
	var missing []string
	for _, s := range v.Statement.GetSubject() {
		if _, ok := have[s.GetName()]; !ok {
			missing = append(missing, s.GetName())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("verify provenance: %s: %w: subject %s is missing (it has %v)", where, provenance.ErrSubject, strings.Join(missing, ", "), slices.Sorted(maps.Keys(have)))
	}
	return nil
}

// readEnvelope reads a provenance file, bounded: it is hostile until its
// signature verifies.
func readEnvelope(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", filepath.Dir(path), engine.ErrNoProvenance)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, provenance.MaxEnvelope+1))
	if err != nil {
		return nil, err
	}
	if len(b) > provenance.MaxEnvelope {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, provenance.MaxEnvelope)
	}
	return b, nil
}

func readBlob(ctx context.Context, store cache.Store, d cache.Digest, limit int64) ([]byte, error) {
	rc, err := store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(ctxio.Reader(ctx, rc), limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("blob %s larger than %d bytes", d, limit)
	}
	return buf.Bytes(), nil
}

// blobDigest streams a blob through sha256.
func blobDigest(ctx context.Context, store cache.Store, d cache.Digest) (digest.Digest, error) {
	rc, err := store.Open(ctx, d)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxio.Reader(ctx, rc), make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	pub, err := provenance.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", path, err)
	}
	return pub, nil
}

// policyFile is the JSON form of a provenance.Policy.
type policyFile struct {
	BuilderIDs   []string          `json:"builder_ids"`
	Dependencies map[string]string `json:"dependencies"`
}

func readPolicy(path string) (*provenance.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var pf policyFile
	if err := dec.Decode(&pf); err != nil {
		return nil, fmt.Errorf("--policy %s: %w (want {\"builder_ids\": [...], \"dependencies\": {\"name\": \"sha256:…\"}})", path, err)
	}
	p := &provenance.Policy{BuilderIDs: pf.BuilderIDs, Dependencies: map[string]digest.Digest{}}
	for name, d := range pf.Dependencies {
		dd := digest.Digest(d)
		if err := dd.Validate(); err != nil || dd.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("--policy %s: dependency %s: %q is not a sha256:<hex> digest", path, name, d)
		}
		p.Dependencies[name] = dd
	}
	return p, nil
}

// verifyReport is what verify prints.
type verifyReport struct {
	Target       string         `json:"target"`
	Verified     bool           `json:"verified"`
	Error        string         `json:"error,omitempty"`
	Key          string         `json:"key,omitempty"`
	KeyType      string         `json:"key_type,omitempty"`
	Builder      string         `json:"builder,omitempty"`
	Version      string         `json:"version,omitempty"`
	Image        string         `json:"image,omitempty"`
	Subjects     []reportDigest `json:"subjects,omitempty"`
	Dependencies []reportDigest `json:"dependencies,omitempty"`
	Policy       bool           `json:"policy"`
}

type reportDigest struct {
	Name   string `json:"name"`
	URI    string `json:"uri,omitempty"`
	Digest string `json:"digest"`
}

func (r *verifyReport) fill(v *provenance.Verified, keyFile string, pub crypto.PublicKey, policy bool) {
	r.Verified, r.Key, r.KeyType, r.Policy = true, keyFile, keyType(pub), policy
	b := v.Provenance.GetRunDetails().GetBuilder()
	r.Builder, r.Version = b.GetId(), b.GetVersion()["imsbuild"]
	if img, ok := v.Provenance.GetBuildDefinition().GetExternalParameters().GetFields()["image"]; ok {
		r.Image = img.GetStringValue()
	}
	for _, s := range v.Statement.GetSubject() {
		r.Subjects = append(r.Subjects, reportDigest{Name: s.GetName(), Digest: "sha256:" + s.GetDigest()["sha256"]})
	}
	for _, d := range v.Provenance.GetBuildDefinition().GetResolvedDependencies() {
		r.Dependencies = append(r.Dependencies, reportDigest{Name: d.GetName(), URI: d.GetUri(), Digest: "sha256:" + d.GetDigest()["sha256"]})
	}
}

func (r *verifyReport) write(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	if !r.Verified {
		fmt.Fprintf(w, "NOT VERIFIED %s\n", r.Target)
		return nil
	}
	fmt.Fprintf(w, "verified %s\n", r.Target)
	fmt.Fprintf(w, "  signature   ok (%s key %s)\n", r.KeyType, r.Key)
	fmt.Fprintf(w, "  builder     %s (imsbuild %s)\n", r.Builder, r.Version)
	if r.Image != "" {
		fmt.Fprintf(w, "  image       %s\n", r.Image)
	}
	for _, s := range r.Subjects {
		fmt.Fprintf(w, "  subject     %-16s %s\n", s.Name, s.Digest)
	}
	for _, d := range r.Dependencies {
		uri := ""
		if d.URI != "" {
			uri = "  " + d.URI
		}
		fmt.Fprintf(w, "  dependency  %-16s %s%s\n", d.Name, d.Digest, uri)
	}
	if r.Policy {
		fmt.Fprintln(w, "  policy      ok")
	}
	return nil
}

// keyType names a public key for messages.
func keyType(pub crypto.PublicKey) string {
	switch pub.(type) {
	case ed25519.PublicKey:
		return "ed25519"
	case *ecdsa.PublicKey:
		return "ECDSA P-256"
	}
	return fmt.Sprintf("%T", pub)
}
