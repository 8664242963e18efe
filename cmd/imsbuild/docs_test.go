package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/spec"
)

var updateDocsFlag = flag.Bool("update-docs", false, "rewrite the generated parts of docs/ (same as make docs)")

// repoRoot is where docs/ and README.md are, seen from this package.
const repoRoot = "../.."

// TestDocsUpToDate fails when a schema, a doc entry or a command changed
// without regenerating docs/ (make docs, or go test -run TestDocsUpToDate -update-docs).
func TestDocsUpToDate(t *testing.T) {
	changed, err := updateDocs(repoRoot, *updateDocsFlag)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) > 0 && !*updateDocsFlag {
		t.Errorf("generated parts of %v are out of date; run make docs", changed)
	}
}

func TestUpdateDocsRewritesStaleTables(t *testing.T) {
	root := t.TempDir()
	docs := filepath.Join(root, "docs")
	if err := os.MkdirAll(docs, 0o755); err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	for _, b := range spec.BlockDocs() {
		fmt.Fprintf(&page, "## %s\n\n<!-- generated:attributes %s -->\nstale\n<!-- end generated -->\n\n", b.ID, b.ID)
	}
	name := filepath.Join(docs, "all.md")
	if err := os.WriteFile(name, []byte(page.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := updateDocs(root, false)
	if err != nil || len(changed) != 1 || changed[0] != name {
		t.Fatalf("updateDocs(check) = %v, %v; want [%s], nil", changed, err, name)
	}
	if _, err := updateDocs(root, true); err != nil {
		t.Fatal(err)
	}
	if changed, err := updateDocs(root, false); err != nil || len(changed) != 0 {
		t.Fatalf("updateDocs after write = %v, %v; want none", changed, err)
	}
	got, _ := os.ReadFile(name)
	if strings.Contains(string(got), "stale") || !strings.Contains(string(got), "| `compression` |") {
		t.Errorf("rewritten page lacks the squashfs table:\n%s", got)
	}

	// A block whose table is on no page is an error.
	if err := os.WriteFile(name, []byte("<!-- generated:attributes image -->\n<!-- end generated -->\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := updateDocs(root, false); err == nil || !strings.Contains(err.Error(), "image.squashfs") {
		t.Errorf("updateDocs with missing tables = %v, want an error naming image.squashfs", err)
	}
}

// snippet is one ```hcl block of a Markdown file.
type snippet struct {
	pos      string   // file:line
	src      string   // the HCL text
	fragment bool     // marked <!-- snippet: fragment -->: not a whole build
	files    []string // <!-- snippet: files a b -->: files to create first
}

// snippets extracts the ```hcl blocks of a Markdown file. An HTML comment
// on the line before a block qualifies it:
//
//	<!-- snippet: fragment -->           part of a build; not validated (counted)
//	<!-- snippet: files a.pem ~/k.pub -->  files the build reads, stubbed by the test
func snippets(name string) ([]snippet, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []snippet
	var cur *snippet
	prev := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```hcl":
			cur = &snippet{pos: fmt.Sprintf("%s:%d", name, n)}
			if d, ok := strings.CutPrefix(strings.TrimSpace(prev), "<!-- snippet:"); ok {
				d = strings.TrimSpace(strings.TrimSuffix(d, "-->"))
				switch {
				case d == "fragment":
					cur.fragment = true
				case strings.HasPrefix(d, "files "):
					cur.files = strings.Fields(strings.TrimPrefix(d, "files "))
				default:
					return nil, fmt.Errorf("%s: unknown snippet directive %q", cur.pos, d)
				}
			}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.src += line + "\n"
		}
		prev = line
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: unterminated code block", cur.pos)
	}
	return out, sc.Err()
}

// stubs are the contents of the files snippets read, by extension.
var stubs = map[string]string{
	".pem": "-----BEGIN CERTIFICATE-----\nMIIBstub\n-----END CERTIFICATE-----\n",
	".pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstub docs@example\n",
}

// validateSnippet loads s as a whole build, as imsbuild validate does.
func validateSnippet(t *testing.T, s snippet) error {
	dir, home := t.TempDir(), t.TempDir()
	for _, f := range s.files {
		p := filepath.Join(dir, f)
		if rest, ok := strings.CutPrefix(f, "~/"); ok {
			p = filepath.Join(home, rest)
		}
		content, ok := stubs[filepath.Ext(f)]
		if !ok {
			content = "stub\n"
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(s.src), 0o644); err != nil {
		return err
	}
	cfg, diags := spec.Load(dir, spec.Options{Environ: []string{"HOME=" + home}})
	if diags.HasErrors() {
		var b strings.Builder
		_ = spec.WriteDiagnostics(&b, cfg.Files, diags, false)
		return fmt.Errorf("%s", b.String())
	}
	if _, err := engine.NewGraph(cfg); err != nil {
		return err
	}
	return nil
}

// wantFragments is how many snippets of docs/ and README.md are marked as
// fragments. Raise it only for a snippet that cannot be a whole build.
const wantFragments = 0

// TestDocSnippetsValidate loads every ```hcl block of docs/ and README.md
// as a build, so that no example in the documentation is wrong.
func TestDocSnippetsValidate(t *testing.T) {
	files := []string{filepath.Join(repoRoot, "README.md")}
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	total, fragments := 0, 0
	for _, f := range files {
		ss, err := snippets(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			total++
			if s.fragment {
				fragments++
				continue
			}
			if f := hclwrite.Format([]byte(s.src)); string(f) != s.src {
				t.Errorf("%s: the example is not formatted as imsbuild fmt would write it:\n%s", s.pos, f)
			}
			if err := validateSnippet(t, s); err != nil {
				t.Errorf("%s: the example does not validate:\n%v", s.pos, err)
			}
		}
	}
	if fragments != wantFragments {
		t.Errorf("%d snippets are marked as fragments, want %d: make them whole builds, or change wantFragments on purpose", fragments, wantFragments)
	}
	if total < 20 {
		t.Errorf("found %d hcl snippets in %d files; are docs/ and README.md there?", total, len(files))
	}
}

func TestValidateSnippetCatchesErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		files     []string
		want      string
	}{
		{"unknown argument", "image \"a\" {\n  import = \"r\"\n  colour = 1\n}\n", nil, "Unsupported argument"},
		{"missing file", "locals { ca = file(\"ca.pem\") }\n", nil, "ca.pem"},
		{"dangling reference", "image \"a\" {\n  from = image.b\n}\n", nil, "undeclared image"},
		{"ok with stub", "image \"a\" {\n  import = \"r\"\n  ca_certificates = [file(\"ca.pem\")]\n}\n", []string{"ca.pem"}, ""},
		{"home stub", "image \"a\" {\n  import = \"r\"\n  interactive { public_keys = [file(\"~/.ssh/k.pub\")] }\n}\n", []string{"~/.ssh/k.pub"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateSnippet(t, snippet{src: tc.src, files: tc.files})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("validateSnippet() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("validateSnippet() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSnippetsDirectives(t *testing.T) {
	md := filepath.Join(t.TempDir(), "p.md")
	text := "x\n```hcl\na = 1\n```\n<!-- snippet: fragment -->\n```hcl\nb = 2\n```\n<!-- snippet: files x.pem y -->\n```hcl\nc = 3\n```\n```sh\nno\n```\n"
	if err := os.WriteFile(md, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ss, err := snippets(md)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 3 || ss[0].src != "a = 1\n" || ss[0].fragment || !ss[1].fragment || strings.Join(ss[2].files, ",") != "x.pem,y" {
		t.Errorf("snippets() = %+v", ss)
	}
	if err := os.WriteFile(md, []byte("<!-- snippet: typo -->\n```hcl\n```\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := snippets(md); err == nil {
		t.Error("snippets() accepted an unknown directive")
	}
}

// pendingPages are linked from docs/ but written on another branch.
var pendingPages = map[string]bool{"docs/security.md": true}

var linkRE = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)

// TestDocsLinks fails on a relative link to a file that does not exist,
// or to an anchor that no heading of the target page makes.
func TestDocsLinks(t *testing.T) {
	pages := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(repoRoot, p)
			pages = append(pages, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, page := range pages {
		src, err := os.ReadFile(filepath.Join(repoRoot, page))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range linkRE.FindAllStringSubmatch(string(src), -1) {
			target, anchor := m[1], strings.TrimPrefix(m[2], "#")
			if strings.Contains(target, "://") {
				continue
			}
			rel := filepath.Clean(filepath.Join(filepath.Dir(page), target))
			checked++
			if pendingPages[rel] {
				continue
			}
			body, err := os.ReadFile(filepath.Join(repoRoot, rel))
			if err != nil {
				t.Errorf("%s: link to %s: %v", page, target, err)
				continue
			}
			if anchor != "" && !slices.Contains(anchors(string(body)), anchor) {
				t.Errorf("%s: link to %s#%s: no such heading (have %v)", page, target, anchor, anchors(string(body)))
			}
		}
	}
	if checked < 30 {
		t.Errorf("checked only %d links", checked)
	}
}

// anchors returns the GitHub anchors of the Markdown headings in body.
func anchors(body string) []string {
	var out []string
	inCode := false
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// TestFirstImageGuideMatchesExample keeps the guide's build file the one
// that examples/busybox builds.
func TestFirstImageGuideMatchesExample(t *testing.T) {
	ss, err := snippets(filepath.Join(repoRoot, "docs/guides/first-image.md"))
	if err != nil || len(ss) == 0 {
		t.Fatalf("snippets(first-image.md) = %v, %v", ss, err)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples/busybox/build.ims.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if len(lines) == 0 && (strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "") {
			continue // the file's leading comment
		}
		lines = append(lines, l)
	}
	if want := strings.Join(lines, ""); ss[0].src != want {
		t.Errorf("the build file in first-image.md differs from examples/busybox/build.ims.hcl:\n%s\nwant:\n%s", ss[0].src, want)
	}
}

func TestCLIReference(t *testing.T) {
	got, err := cliReference()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### imsbuild build\n", "### imsbuild cache prune\n", "--keep-going", "--max-size", "(#imsbuild-cache-ls)"} {
		if !strings.Contains(got, want) {
			t.Errorf("cliReference() lacks %q", want)
		}
	}
	for _, bad := range []string{"inherited from parent", "### imsbuild docs", "Auto generated"} {
		if strings.Contains(got, bad) {
			t.Errorf("cliReference() has %q", bad)
		}
	}
	if n := strings.Count(got, "--cache-from stringArray"); n != 1 {
		t.Errorf("the global --cache-from is listed %d times, want once", n)
	}
}
