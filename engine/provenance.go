package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/atomicfile"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/provenance"
	"github.com/imsbuild/imsbuild/spec"
)

// BuilderID is the SLSA builder id of every provenance imsbuild signs, with
// its version after the "@". A policy that accepts only some releases lists
// their ids.
func BuilderID(version string) string {
	return "https://github.com/imsbuild/imsbuild@" + version
}

// The provenance of an image is made after its step is done, built or
// cached, when Options.Signer is set. It is not part of the step's result:
// a signing key, the build files' bytes and imsbuild's version must not
// change cache keys. Its envelope goes into the store as a blob, so that
// publishers read it like any output (ims.ProvenanceFile), and a small index
// in StateDir/provenance/<key>.json remembers it: a no-op build with the
// same statement and key reuses it instead of signing and storing again
// (an ECDSA signature differs each time), and `imsbuild verify IMAGE`
// finds it.

// provenanceIndex is the file StateDir/provenance/<key>.json.
type provenanceIndex struct {
	Statement string       `json:"statement"`  // sha256 of the statement signed
	PublicKey string       `json:"public_key"` // sha256 of the signer's PKIX public key
	Envelope  cache.Output `json:"envelope"`
}

// stepPreimage is a step's sealed key preimage and its canonical JSON.
type stepPreimage struct {
	pre   *Preimage
	canon []byte
}

func (e *Engine) setPreimage(id string, pre *Preimage, canon []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.preimages[id] = stepPreimage{pre, canon}
}

func (e *Engine) preimageOf(id string) (stepPreimage, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.preimages[id]
	return p, ok
}

func (e *Engine) setProvenance(id string, out cache.Output) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.provenances[id] = out
}

func (e *Engine) provenanceOf(id string) (cache.Output, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out, ok := e.provenances[id]
	return out, ok
}

// signProvenance makes, signs and stores the provenance of the done image
// step s.
func (e *Engine) signProvenance(ctx context.Context, s *Step) error {
	st, err := e.statement(s)
	if err != nil {
		return fmt.Errorf("provenance of %s: %w", s.ID, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(e.opts.Signer.Public())
	if err != nil {
		return fmt.Errorf("provenance of %s: %w", s.ID, err)
	}
	want := provenanceIndex{Statement: sha256Hex(st), PublicKey: sha256Hex(pubDER)}
	indexPath := e.provenanceIndexPath(e.key(s.ID))
	if idx, err := readProvenanceIndex(indexPath); err == nil && idx.Statement == want.Statement && idx.PublicKey == want.PublicKey {
		if _, err := e.store.Stat(ctx, idx.Envelope.Digest); err == nil {
			e.setProvenance(s.ID, idx.Envelope)
			return nil
		}
	}
	env, err := provenance.Sign(ctx, st, e.opts.Signer)
	if err != nil {
		return fmt.Errorf("provenance of %s: %w", s.ID, err)
	}
	d, size, err := e.store.Put(ctx, bytes.NewReader(env), cache.Digest(digest.FromBytes(env)))
	if err != nil {
		return fmt.Errorf("provenance of %s: store: %w", s.ID, err)
	}
	want.Envelope = cache.Output{Digest: d, Size: size, MD5: md5hex.Of(env), MediaType: ims.MediaTypeDSSE}
	e.setProvenance(s.ID, want.Envelope)
	if err := writeProvenanceIndex(indexPath, want); err != nil {
		// Only reuse and `verify IMAGE` need it; the build has its envelope.
		e.opts.Logger.Warn("record provenance", "step", s.ID, "err", err)
	}
	return nil
}

func (e *Engine) provenanceIndexPath(key string) string {
	return filepath.Join(e.opts.StateDir, "provenance", key+".json")
}

func readProvenanceIndex(path string) (provenanceIndex, error) {
	var idx provenanceIndex
	b, err := os.ReadFile(path)
	if err != nil {
		return idx, err
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("%s: %w", path, err)
	}
	if !idx.Envelope.Digest.Valid() {
		return idx, fmt.Errorf("%s: bad envelope digest", path)
	}
	return idx, nil
}

func writeProvenanceIndex(path string, idx provenanceIndex) error {
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600) // owner-only, as the cache's records
}

// ErrNoProvenance: the image has no signed provenance in this cache (the
// build that made it had no signing key).
var ErrNoProvenance = errors.New("no signed provenance (build it with a signing key: imsbuild.signing or --signing-key)")

// CachedImage is an image step's cached outputs and its provenance
// envelope, for `imsbuild verify IMAGE`.
type CachedImage struct {
	Step       string
	Outputs    map[string]cache.Output
	Provenance cache.Output
}

// Cached returns the cached result of image target (image.x or x) as the
// current build files and cache give it, with the provenance the last
// signed build of it recorded. It builds nothing: a step that is not cached
// is an error, and so is a result without provenance (ErrNoProvenance).
func (e *Engine) Cached(ctx context.Context, target string) (*CachedImage, error) {
	plan, err := e.Plan(ctx, []string{target}, false)
	if err != nil {
		return nil, err
	}
	var step *PlanEntry
	for i := range plan {
		if plan[i].Kind != KindPublish && (plan[i].Step == target || plan[i].Step == "image."+target) {
			step = &plan[i]
		}
	}
	switch {
	case step == nil:
		return nil, &UnknownTargetError{Target: target}
	case step.Action != ActionCached:
		return nil, fmt.Errorf("%s is not in the cache (build it first)", step.Step)
	}
	r := e.result(step.Step)
	idx, err := readProvenanceIndex(e.provenanceIndexPath(step.Key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", step.Step, ErrNoProvenance)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: provenance: %w", step.Step, err)
	}
	return &CachedImage{Step: step.Step, Outputs: r.Outputs, Provenance: idx.Envelope}, nil
}

// subjectNames are the outputs a provenance names: the IMS artifacts and the
// SBOM.
func subjectNames() []string { return append(ims.ArtifactNames(), ims.SBOMFile) }

// statement returns the provenance statement of the done image step s.
func (e *Engine) statement(s *Step) ([]byte, error) {
	r := e.result(s.ID)
	pre, ok := e.preimageOf(s.ID)
	if r == nil || !ok {
		return nil, fmt.Errorf("%s has not been built", s.ID)
	}
	b := provenance.Build{
		BuilderID: BuilderID(e.version()),
		Version:   e.version(),
	}
	for _, name := range subjectNames() {
		if o, ok := r.Outputs[name]; ok {
			b.Subjects = append(b.Subjects, provenance.Artifact{Name: name, Digest: digest.Digest(o.Digest)})
		}
	}
	ext, err := e.externalParameters(s)
	if err != nil {
		return nil, err
	}
	b.ExternalParameters = ext
	internal := map[string]json.RawMessage{"preimage": pre.canon}
	if p, ok := e.preimageOf(prepareID(s)); ok && s.Kind == KindKiwi {
		internal["prepare_preimage"] = p.canon
	}
	if b.InternalParameters, err = json.Marshal(internal); err != nil {
		return nil, err
	}
	b.ResolvedDependencies = e.dependencies(s, pre.pre)
	return provenance.Statement(b)
}

func (e *Engine) version() string {
	if e.opts.Version == "" {
		return "unknown"
	}
	return e.opts.Version
}

// buildFile is a build file in the external parameters.
type buildFile struct {
	Path   string `json:"path"` // relative to the build directory
	SHA256 string `json:"sha256"`
}

// externalParameters are what the user controls: the image built, the
// build files by digest and the variables, sensitive ones redacted.
// The build files and variables are the same for every image: computed once.
func (e *Engine) externalParameters(s *Step) (map[string]any, error) {
	e.extOnce.Do(func() { e.ext, e.extErr = e.buildParameters() })
	if e.extErr != nil {
		return nil, e.extErr
	}
	out := map[string]any{"image": s.ID}
	for k, v := range e.ext {
		out[k] = v
	}
	return out, nil
}

func (e *Engine) buildParameters() (map[string]any, error) {
	files := []buildFile{}
	for _, name := range e.cfg.BuildFiles {
		f := e.cfg.Files[name]
		if f == nil {
			continue
		}
		rel, err := filepath.Rel(e.cfg.Dir, absPath(name))
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = filepath.Base(name)
		}
		files = append(files, buildFile{Path: filepath.ToSlash(rel), SHA256: sha256Hex(f.Bytes)})
	}
	vars := map[string]any{}
	for name, v := range e.cfg.Variables {
		if v.Sensitive {
			vars[name] = spec.Redacted
			continue
		}
		if !v.Value.IsWhollyKnown() {
			continue
		}
		raw, err := ctyjson.Marshal(v.Value, v.Value.Type())
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", name, err)
		}
		var val any
		if err := json.Unmarshal(raw, &val); err != nil {
			return nil, fmt.Errorf("variable %s: %w", name, err)
		}
		vars[e.redactValue(name).(string)] = e.redactValue(val)
	}
	return map[string]any{"build_files": files, "variables": vars}, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// redactValue replaces every text of a JSON value that holds a sensitive
// value (a variable not declared sensitive may still equal or embed one).
func (e *Engine) redactValue(v any) any {
	switch t := v.(type) {
	case string:
		if e.sensitive(t) {
			return spec.Redacted
		}
		return t
	case []any:
		for i := range t {
			t[i] = e.redactValue(t[i])
		}
		return t
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[e.redactValue(k).(string)] = e.redactValue(x)
		}
		return out
	}
	return v
}

// dependencies are the resolved inputs of s by digest, from its key
// preimage (and its prepare's): the import source, the parent image (by its
// rootfs), builder images, CA certificates, and for a recipe image the
// recipe tree, the tracked repositories' metadata and any other input of
// the prepare (a package lock). Texts sealed as HMACs are left out.
func (e *Engine) dependencies(s *Step, pre *Preimage) []provenance.Dependency {
	var deps []provenance.Dependency
	add := func(name, uri, d string) {
		dd := digest.Digest(d)
		if dd.Validate() != nil || dd.Algorithm() != digest.SHA256 {
			return
		}
		if e.sensitive(uri) {
			uri = "" // a URL with a token in it
		}
		deps = append(deps, provenance.Dependency{Name: name, URI: uri, Digest: dd})
	}
	img := s.Image
	for _, in := range sortedKeys(pre.Inputs) {
		d := pre.Inputs[in]
		switch {
		case in == "import":
			uri := ""
			if img != nil && strings.Contains(img.Import, "://") {
				uri = img.Import
			}
			add("import", uri, d)
		case in == "parent."+ims.ArtifactRootfs && len(s.Deps) > 0:
			add(s.Deps[0].ID, "", d)
		case strings.HasPrefix(in, "parent.") || in == "prepared":
			// the parent is named by its rootfs; the prepared root by
			// the prepare's inputs below
		default:
			add(in, "", d)
		}
	}
	for i, c := range pre.Customize {
		uri := ""
		if img != nil && i < len(img.Customize) {
			uri = img.Customize[i].BuilderImage
		}
		add(fmt.Sprintf("customize[%d].builder_image", i), uri, c.Builder)
	}
	if s.Kind == KindKiwi {
		if p, ok := e.preimageOf(prepareID(s)); ok {
			r := e.cfg.Recipes[img.Recipe]
			for _, in := range sortedKeys(p.pre.Inputs) {
				d := p.pre.Inputs[in]
				switch {
				case in == "recipe":
					uri := ""
					if r != nil && strings.Contains(r.Source, "://") {
						uri = r.Source
					}
					add("recipe."+img.Recipe, uri, d)
				case strings.HasPrefix(in, "repository.") && strings.HasSuffix(in, ".metadata"):
					name := strings.TrimSuffix(in, ".metadata")
					uri := ""
					if rp := e.cfg.Repositories[strings.TrimPrefix(name, "repository.")]; rp != nil {
						uri = withoutUserinfo(rp.URL)
					}
					add(name, uri, d)
				default:
					add("recipe."+img.Recipe+"."+in, "", d)
				}
			}
			if d, ok := p.pre.Tools["builder_image"]; ok && r != nil {
				add("recipe."+img.Recipe+".builder_image", r.BuilderImage, d)
			}
			// A prepared root derived from a cached one (steps.Prepare)
			// names its record and the base root.
			if pr := e.result(prepareID(s)); pr != nil {
				if o, ok := pr.Outputs[steps.DerivationOutput]; ok {
					add("recipe."+img.Recipe+".derivation", "", string(o.Digest))
					if base, err := steps.DerivationBase(context.Background(), e.store, o); err == nil {
						add("recipe."+img.Recipe+".derived_from", "", string(base))
					}
				}
			}
		}
	}
	return deps
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// withoutUserinfo drops credentials from a repository URL.
func withoutUserinfo(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// extState is the engine's once-per-build external parameters.
type extState struct {
	extOnce sync.Once
	ext     map[string]any
	extErr  error
}
