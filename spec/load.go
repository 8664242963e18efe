package spec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// buildFileSuffix names the files of a build directory.
const buildFileSuffix = ".ims.hcl"

// loader holds the state of one Load call. Decoding runs in phases: parse,
// variables, locals, block names, references, then every block's body.
type loader struct {
	// runCtx cancels loading; it lives only as long as one Load call.
	runCtx context.Context
	dir    string // the directory as the caller passed it
	opts   Options
	cfg    *Config
	r      resolver
	env    map[string]string
	diags  hcl.Diagnostics

	parser *hclparse.Parser
	ctx    *hcl.EvalContext // grows as phases complete

	imsbuild   []*hcl.Block
	variables  []*hcl.Block
	locals     []*hcl.Block
	repoBlocks map[string]*hcl.Block
	recBlocks  map[string]*hcl.Block
	imgBlocks  map[string]*hcl.Block
	pubBlocks  []*hcl.Block

	varDecls   map[string]*variable
	sensitive  map[string]bool // texts of sensitive values (see unmark)
	localAttrs map[string]*hcl.Attribute
	images     map[string]*imageDecl
	// recDists are the linux_distribution arguments of recipes, nil when
	// the argument did not evaluate (its diagnostic is out already).
	recDists map[string]*hcl.Attribute
}

// Load parses every *.ims.hcl file of dir (sorted by name) into one build.
// It always returns a non-nil *Config whose Files map is set, so that the
// caller can print the diagnostics with source snippets, and it returns all
// diagnostics at once, sorted by position. File names in ranges and in Files
// are dir joined with the file name, as the caller spelled dir.
func Load(dir string, opts Options) (*Config, hcl.Diagnostics) {
	return LoadContext(context.Background(), dir, opts)
}

// LoadContext is Load that stops early when ctx is done, with an error
// diagnostic; the caller should check ctx.Err() before printing them.
func LoadContext(ctx context.Context, dir string, opts Options) (*Config, hcl.Diagnostics) {
	cfg := &Config{
		Files:        map[string]*hcl.File{},
		Repositories: map[string]*Repository{},
		Recipes:      map[string]*Recipe{},
		Images:       map[string]*Image{},
		Variables:    map[string]Variable{},
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = filepath.Clean(dir)
	}
	cfg.Dir = abs
	env := environ(opts.Environ)
	l := &loader{
		runCtx:     ctx,
		dir:        dir,
		opts:       opts,
		cfg:        cfg,
		r:          resolver{dir: abs, home: env["HOME"]},
		env:        env,
		parser:     hclparse.NewParser(),
		repoBlocks: map[string]*hcl.Block{},
		recBlocks:  map[string]*hcl.Block{},
		imgBlocks:  map[string]*hcl.Block{},
		varDecls:   map[string]*variable{},
		localAttrs: map[string]*hcl.Attribute{},
		images:     map[string]*imageDecl{},
		recDists:   map[string]*hcl.Attribute{},
		sensitive:  map[string]bool{},
	}
	l.ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{},
		Functions: functions(ctx, l.r, env),
	}
	l.load()
	buildFiles := map[string]bool{}
	for name, f := range l.parser.Files() {
		cfg.Files[name] = f
		buildFiles[name] = !slices.Contains(opts.VarFiles, name)
	}
	cfg.Sensitive = l.sensitiveList()
	l.redactDiagnostics(buildFiles)
	sortDiags(l.diags)
	return cfg, l.diags
}

func (l *loader) load() {
	bodies := l.parse()
	if l.diags.HasErrors() {
		return
	}
	for _, body := range bodies {
		l.collect(body)
	}
	for _, phase := range []func(){
		l.decodeVariables,
		l.evalLocals,
		l.decodeSettings,
		l.declareNames,
		l.decodeRepositories,
		l.decodeRecipes,
		l.decodeImages,
		l.decodePublishes,
	} {
		if err := l.runCtx.Err(); err != nil {
			l.cancelled(err)
			return
		}
		phase()
	}
}

// cancelled reports that loading stopped because its context is done.
func (l *loader) cancelled(err error) {
	l.errorf(hcl.Range{Filename: l.dir, Start: hcl.InitialPos, End: hcl.InitialPos}, "Loading cancelled", "%v.", err)
}

func (l *loader) addDiag(d *hcl.Diagnostic) { l.diags = append(l.diags, d) }

func (l *loader) errorf(subject hcl.Range, summary, detailFormat string, args ...any) {
	l.addDiag(&hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFormat, args...),
		Subject:  subject.Ptr(),
	})
}

// parse reads and parses every build file of the directory.
func (l *loader) parse() []hcl.Body {
	dirRange := hcl.Range{Filename: l.dir, Start: hcl.InitialPos, End: hcl.InitialPos}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		l.errorf(dirRange, "Cannot read build directory", "%v.", err)
		return nil
	}
	var bodies []hcl.Body
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), buildFileSuffix) {
			continue
		}
		name := filepath.Join(l.dir, e.Name())
		if err := l.runCtx.Err(); err != nil {
			l.cancelled(err)
			return nil
		}
		if f := l.parseFile(name, "Cannot read build file"); f != nil {
			bodies = append(bodies, f.Body)
			l.cfg.BuildFiles = append(l.cfg.BuildFiles, name)
		}
	}
	if len(bodies) == 0 && !l.diags.HasErrors() {
		l.errorf(dirRange, "No build files", "The directory %s has no *%s files.", l.dir, buildFileSuffix)
	}
	return bodies
}

// collect sorts the top-level blocks of a file by type and reports
// duplicate names.
func (l *loader) collect(body hcl.Body) {
	content, diags := body.Content(topSchema)
	l.diags = append(l.diags, diags...)
	for _, b := range content.Blocks {
		switch b.Type {
		case "imsbuild":
			if len(l.imsbuild) > 0 {
				l.duplicate(b, l.imsbuild[0], "imsbuild", "There can be only one imsbuild block in a build")
				continue
			}
			l.imsbuild = append(l.imsbuild, b)
		case "variable":
			l.variables = append(l.variables, b)
		case "locals":
			l.locals = append(l.locals, b)
		case "repository":
			l.declare(l.repoBlocks, b)
		case "recipe":
			l.declare(l.recBlocks, b)
		case "image":
			l.declare(l.imgBlocks, b)
		case "publish":
			l.pubBlocks = append(l.pubBlocks, b)
		}
	}
}

// declare records a named block, rejecting invalid and duplicate names.
func (l *loader) declare(m map[string]*hcl.Block, b *hcl.Block) bool {
	name := b.Labels[len(b.Labels)-1]
	if !l.validName(b, len(b.Labels)-1) {
		return false
	}
	if prev, ok := m[name]; ok {
		l.duplicate(b, prev, fmt.Sprintf("%s %q", b.Type, name), "Block names must be unique within a build")
		return false
	}
	m[name] = b
	return true
}

func (l *loader) validName(b *hcl.Block, i int) bool {
	if hclsyntax.ValidIdentifier(b.Labels[i]) {
		return true
	}
	l.errorf(b.LabelRanges[i], "Invalid name",
		"%q is not a valid name: a name must start with a letter or underscore and may contain only letters, digits, underscores and dashes.", b.Labels[i])
	return false
}

func (l *loader) duplicate(b, prev *hcl.Block, what, why string) {
	subject := b.DefRange
	if len(b.LabelRanges) > 0 {
		subject = hcl.RangeOver(b.LabelRanges[0], b.LabelRanges[len(b.LabelRanges)-1])
	}
	l.errorf(subject, fmt.Sprintf("Duplicate %s block", b.Type),
		"A %s block was already declared at %s. %s.", what, posString(prev.DefRange), why)
}

// posString is "file:line" of r.
func posString(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

// sortDiags orders diags by file, line and column; diagnostics without a
// subject keep their place at the end.
func sortDiags(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Line != b.Start.Line:
			return a.Start.Line < b.Start.Line
		default:
			return a.Start.Column < b.Start.Column
		}
	})
}

// slicesSortByPos sorts attributes by their position in the source.
func slicesSortByPos(attrs []*hcl.Attribute) {
	sort.SliceStable(attrs, func(i, j int) bool {
		a, b := attrs[i].Range, attrs[j].Range
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}
