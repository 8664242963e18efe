package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/treediff"
)

// Check mode (Options.Check, `imsbuild build --check`) is Nix's --check:
// the checked steps are built again without reading their cached result,
// and the new outputs are compared with the cached ones.
//
//   - Checked steps: with no targets, every image step; image.x (or x) is
//     the image step only; image.x/prepare is a recipe image's kiwi prepare
//     (minutes and the network, so only when named). The image step of a
//     recipe image is checked from the cached prepared root.
//   - Everything else a checked step needs (a parent image, the prepare of
//     a checked recipe image) comes from the cache, so only the checked
//     steps run; a dependent is checked against its parent's cached result,
//     never against the parent's rebuild.
//   - A checked step with no cached result (or a parent without one) is not
//     built but reported not yet built (NotBuiltError), as Nix does: a
//     check has nothing to compare with, and a build would change the cache.
//   - The cache stays as it was: a rebuild's outputs go to a scratch store
//     that is removed after the comparison, its log to <step>.check.log.
//   - Publishes do not run; interactive images (never cached) are skipped
//     unless named, when they are not yet built.
//
// A differing output is summarised: a squashfs (rootfs, prepared root) as
// the first treediff.DefaultMax changes of its tree and their count; any
// other output (kernel, initrd, boot_parameters, the SBOM) by digest and
// size.

// CheckReport says how a checked step's rebuild compares with its cached
// result: the outputs that differ, none when identical.
type CheckReport struct {
	Outputs []OutputDiff `json:"outputs,omitempty"`
}

// Identical reports a rebuild equal to the cached result.
func (r *CheckReport) Identical() bool { return r == nil || len(r.Outputs) == 0 }

// Output differences.
const (
	DiffMissing = "missing" // cached, not in the rebuild
	DiffExtra   = "extra"   // in the rebuild only
	DiffContent = "differs" // another digest
)

// OutputDiff is one output of a step that differs between the cached
// result (Old) and the rebuild (New).
type OutputDiff struct {
	Name string        `json:"name"`
	Diff string        `json:"diff"`
	Old  *cache.Output `json:"old,omitempty"`
	New  *cache.Output `json:"new,omitempty"`
	// Changes are the first differences inside a squashfs output, in path
	// order; TotalChanges counts them all.
	Changes      []treediff.Change `json:"changes,omitempty"`
	TotalChanges int               `json:"total_changes,omitempty"`
	// Note says what the digests alone do not: a squashfs whose trees are
	// equal differs in its layout or compression only.
	Note string `json:"note,omitempty"`
}

// DiffError is a checked step whose rebuild differs from its cached result.
// It is reported by a StatusDiffers event, not as a failure: the other
// steps are checked too.
type DiffError struct {
	Step   string
	Report *CheckReport
}

func (e *DiffError) Error() string {
	names := make([]string, len(e.Report.Outputs))
	for i, o := range e.Report.Outputs {
		names[i] = o.Name
	}
	return fmt.Sprintf("%s: rebuild differs from the cached result (%s)", e.Step, strings.Join(names, ", "))
}

// NotBuiltError is a step --check cannot check: it (or a step it needs) has
// no cached result to compare with.
type NotBuiltError struct {
	Step   string
	Reason string
}

func (e *NotBuiltError) Error() string {
	return fmt.Sprintf("%s: %s: nothing to check against (build it first)", e.Step, e.Reason)
}

// CheckTargetError is a target --check does not take (a publish, the
// prepare of an image that has none); the CLI reports a usage error.
type CheckTargetError struct {
	Target string
	Reason string
}

func (e *CheckTargetError) Error() string {
	return fmt.Sprintf("--check %s: %s", e.Target, e.Reason)
}

// selectCheck returns the steps a check of targets runs, and marks which
// are checked and which are needed by another selected step.
func (e *Engine) selectCheck(targets []string) ([]*Step, error) {
	e.checked, e.needed = map[string]bool{}, map[string]bool{}
	var bases []string
	for _, t := range targets {
		base, prep := strings.CutSuffix(t, "/prepare")
		s := e.graph.Step(base)
		if s == nil {
			s = e.graph.Step("image." + base)
		}
		switch {
		case s == nil:
			return nil, &UnknownTargetError{Target: t, Known: e.graph.ids()}
		case s.Kind == KindPublish:
			return nil, &CheckTargetError{Target: t, Reason: "a publish is not checked; name its images"}
		case prep && s.Kind != KindKiwi:
			return nil, &CheckTargetError{Target: t, Reason: s.ID + " is not a recipe image: it has no prepare step"}
		case prep:
			e.checked[prepareID(s)] = true
		default:
			e.checked[s.ID] = true
		}
		bases = append(bases, s.ID)
	}
	sel, err := e.graph.Select(bases)
	if err != nil {
		return nil, err
	}
	var out []*Step
	for _, s := range sel {
		if s.Kind == KindPublish {
			continue
		}
		if len(targets) == 0 && e.cacheable(s) {
			e.checked[s.ID] = true
		}
		for _, d := range s.Deps {
			e.needed[d.ID] = true
		}
		out = append(out, s)
	}
	return out, nil
}

// checkStep checks the checked sub-steps of image step s and takes the
// others from the cache. It reports its own events; a difference comes
// back as a *DiffError (joined when prepare and image both differ).
func (e *Engine) checkStep(ctx context.Context, s *Step) error {
	if !e.checked[s.ID] && !e.checked[prepareID(s)] && !e.needed[s.ID] {
		// Only an interactive image, with no target given: a person's
		// work is never cached, so there is nothing to check against.
		e.emit(Event{Step: s.ID, Status: StatusSkipped, Reason: "an interactive image is never cached: nothing to check"})
		return nil
	}
	ops, err := e.opsOf(s, false) // no handover: the image step unpacks the cached prepared root
	if err != nil {
		return err
	}
	var diffs []error
	if ops.prepare != nil {
		id := prepareID(s)
		pre, err := e.preimage(ctx, ops.prepare)
		if err != nil {
			return err
		}
		if e.checked[id] {
			err = e.checkCached(ctx, id, pre, s.ID+".prepare.check.log", ops.prepare)
		} else {
			err = e.lookup(ctx, id, pre)
		}
		if _, ok := errors.AsType[*DiffError](err); ok {
			diffs = append(diffs, err)
		} else if err != nil {
			return err
		}
		if !e.checked[s.ID] && !e.needed[s.ID] {
			return errors.Join(diffs...)
		}
	}
	pre, err := e.preimage(ctx, ops.image)
	if errors.Is(err, steps.ErrParentPending) {
		return &NotBuiltError{Step: s.ID, Reason: "its parent has no cached result"}
	}
	if err != nil {
		return err
	}
	switch {
	case !e.cacheable(s):
		err = &NotBuiltError{Step: s.ID, Reason: "an interactive image is never cached"}
	case e.checked[s.ID]:
		err = e.checkCached(ctx, s.ID, pre, s.ID+".check.log", ops.image)
	default:
		err = e.lookup(ctx, s.ID, pre)
	}
	return errors.Join(append(diffs, err)...)
}

// cachedResult returns the cached result of step id for pre, and its key.
func (e *Engine) cachedResult(ctx context.Context, id string, pre *Preimage) (*cache.ActionResult, string, error) {
	e.seal(pre)
	key, _, err := pre.Key()
	if err != nil {
		return nil, "", err
	}
	r, err := e.ac.Get(ctx, key)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return nil, key, &NotBuiltError{Step: id, Reason: "not yet built (no cached result for key " + key[:12] + ")"}
	case errors.Is(err, cache.ErrCorrupt):
		return nil, key, &NotBuiltError{Step: id, Reason: fmt.Sprintf("its cached result was corrupt and is dropped (%v)", err)}
	case err != nil:
		return nil, key, fmt.Errorf("action cache: %w", err)
	}
	return r, key, nil
}

// lookup gives step id its cached result, which a checked step needs.
func (e *Engine) lookup(ctx context.Context, id string, pre *Preimage) error {
	r, key, err := e.cachedResult(ctx, id, pre)
	if err != nil {
		return err
	}
	e.setResult(id, key, r)
	e.emit(Event{Step: id, Status: StatusCached, Key: key})
	return nil
}

// checkCached builds op again into a scratch store, compares its outputs
// with the cached result of pre and reports the outcome (StatusIdentical or
// StatusDiffers). The cached result stays step id's result.
func (e *Engine) checkCached(ctx context.Context, id string, pre *Preimage, logName string, op steps.Op) error {
	start := time.Now()
	old, key, err := e.cachedResult(ctx, id, pre)
	if err != nil {
		return err
	}
	e.setResult(id, key, old)
	if err := os.MkdirAll(e.opts.WorkDir, 0o755); err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(e.opts.WorkDir, "check-")
	if err != nil {
		return err
	}
	defer removeAll(e.opts.Logger, scratch)
	st, err := local.Open(filepath.Join(scratch, "store"))
	if err != nil {
		return fmt.Errorf("check store: %w", err)
	}
	e.emit(Event{Step: id, Status: StatusChecking, Key: key})
	logPath := filepath.Join(e.opts.LogDir, logName)
	lw, err := newStepLog(logPath, e.redact, func(line string) {
		e.emit(Event{Step: id, Status: StatusLog, Line: line})
	})
	if err != nil {
		return err
	}
	res, buildErr := e.buildIn(ctx, id, op, lw, &checkStore{scratch: st, base: e.store, tmp: scratch})
	lw.Close()
	if buildErr != nil {
		return &StepError{Step: id, LogPath: logPath, LogTail: lw.Tail(), Err: buildErr}
	}
	rep, err := e.compare(ctx, id, old, res, st, scratch)
	if err != nil {
		return fmt.Errorf("%s: compare with the cached result: %w", id, err)
	}
	ev := Event{Step: id, Status: StatusIdentical, Key: key, DurationMS: time.Since(start).Milliseconds(), LogPath: logPath}
	for _, o := range res.Outputs {
		ev.Bytes += o.Size
	}
	if rep.Identical() {
		e.emit(ev)
		return nil
	}
	redactChanges(rep, e.redact)
	ev.Status, ev.Check = StatusDiffers, rep
	e.emit(ev)
	return &DiffError{Step: id, Report: rep}
}

// redactChanges masks sensitive values in the changes of rep: paths, link
// targets and xattr values come from the image, where a script may have
// put one.
func redactChanges(rep *CheckReport, redact func(string) string) {
	for i := range rep.Outputs {
		for j, c := range rep.Outputs[i].Changes {
			rep.Outputs[i].Changes[j] = treediff.Change{Path: redact(c.Path), What: c.What, Old: redact(c.Old), New: redact(c.New)}
		}
	}
}

// isTree says which outputs are squashfs trees, compared path by path.
func isTree(name string) bool {
	return name == ims.ArtifactRootfs || name == steps.PreparedOutput
}

// compare lists the outputs of the rebuild (in newStore) that differ from
// the cached result.
func (e *Engine) compare(ctx context.Context, id string, old, rebuilt *cache.ActionResult, newStore *local.Cache, scratch string) (*CheckReport, error) {
	names := make([]string, 0, len(old.Outputs)+len(rebuilt.Outputs))
	for n := range old.Outputs {
		names = append(names, n)
	}
	for n := range rebuilt.Outputs {
		if _, ok := old.Outputs[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	rep := &CheckReport{}
	for _, n := range names {
		o, ook := old.Outputs[n]
		r, rok := rebuilt.Outputs[n]
		d := OutputDiff{Name: n}
		switch {
		case !rok:
			d.Diff, d.Old = DiffMissing, &o
		case !ook:
			d.Diff, d.New = DiffExtra, &r
		case o.Digest == r.Digest:
			continue
		default:
			d.Diff, d.Old, d.New = DiffContent, &o, &r
			if isTree(n) {
				// Unpacking both takes a while on a large root: say why.
				e.emit(Event{Step: id, Status: StatusLog, Line: fmt.Sprintf("%s differs (%s → %s): unpacking both to compare their trees", n, o.Digest, r.Digest)})
				tr, err := e.compareTrees(ctx, o.Digest, r.Digest, newStore, scratch)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", n, err)
				}
				d.Changes, d.TotalChanges = tr.Changes, tr.Total
				if tr.Total == 0 {
					d.Note = "the trees are equal: the squashfs files differ in layout or compression only"
				}
			}
		}
		rep.Outputs = append(rep.Outputs, d)
	}
	return rep, nil
}

// compareTrees unpacks the cached squashfs (fetched from a remote cache if
// need be) and the rebuilt one and lists how their trees differ.
func (e *Engine) compareTrees(ctx context.Context, oldD, newD cache.Digest, newStore *local.Cache, scratch string) (*treediff.Report, error) {
	var rep *treediff.Report
	err := useFile(ctx, e.store, oldD, scratch, func(oldPath string) error {
		return newStore.UseFile(ctx, newD, func(newPath string) error {
			var err error
			rep, err = treediff.Squashfs(ctx, oldPath, newPath, scratch, treediff.DefaultMax)
			return err
		})
	})
	return rep, err
}

// useFile calls fn with a path of blob d: in place when the store allows,
// else a copy under scratch.
func useFile(ctx context.Context, st cache.Store, d cache.Digest, scratch string, fn func(string) error) error {
	if fu, ok := st.(cache.FileUser); ok {
		return fu.UseFile(ctx, d, fn)
	}
	f, err := os.CreateTemp(scratch, "blob-")
	if err != nil {
		return err
	}
	p := f.Name()
	f.Close()
	os.Remove(p)
	defer os.Remove(p)
	if err := st.Materialize(ctx, d, p, true); err != nil {
		return err
	}
	return fn(p)
}

// checkStore is the store of a rebuild under check: what it writes goes
// to the scratch store, what it reads (a parent's rootfs, a prepared root)
// comes from there or else from the build's cache.
type checkStore struct {
	scratch *local.Cache
	base    cache.Store
	tmp     string // for copies of blobs a tool reads as files
}

func (c *checkStore) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	return c.scratch.Put(ctx, r, want)
}

func (c *checkStore) PutFile(ctx context.Context, path string) (cache.Digest, int64, error) {
	return c.scratch.PutFile(ctx, path)
}

// from returns the store that holds d, the scratch one first.
func (c *checkStore) from(ctx context.Context, d cache.Digest) cache.Store {
	if _, err := c.scratch.Stat(ctx, d); err == nil {
		return c.scratch
	}
	return c.base
}

func (c *checkStore) Open(ctx context.Context, d cache.Digest) (io.ReadCloser, error) {
	return c.from(ctx, d).Open(ctx, d)
}

func (c *checkStore) Stat(ctx context.Context, d cache.Digest) (int64, error) {
	return c.from(ctx, d).Stat(ctx, d)
}

func (c *checkStore) Materialize(ctx context.Context, d cache.Digest, dst string, readOnly bool) error {
	return c.from(ctx, d).Materialize(ctx, d, dst, readOnly)
}

func (c *checkStore) UseFile(ctx context.Context, d cache.Digest, fn func(path string) error) error {
	return useFile(ctx, c.from(ctx, d), d, c.tmp, fn)
}
