package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/imsbuild/imsbuild/spec"
)

// The reference pages under docs/ are hand-written prose with generated
// parts between markers, so that the attribute tables and the CLI reference
// come from the schemas and the cobra commands themselves and cannot drift:
//
//	<!-- generated:attributes image -->
//	…rewritten by `imsbuild docs`…
//	<!-- end generated -->
//
// Kinds: "attributes <block id>" (spec.BlockDocs), "functions", "cli".

//go:generate go run . docs ../..

var markerRE = regexp.MustCompile(`(?s)<!-- generated:([a-z]+)((?: [a-z0-9.]+)?) -->\n.*?<!-- end generated -->`)

func newDocsCmd() *cobra.Command {
	var check bool
	var man string
	cmd := &cobra.Command{
		Use:    "docs [REPO]",
		Short:  "Regenerate the generated parts of docs/ (make docs), or man pages (make man)",
		Hidden: true,
		Args:   cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if man != "" {
				return writeMan(man)
			}
			root := "."
			if len(args) > 0 {
				root = args[0]
			}
			changed, err := updateDocs(root, !check)
			if err != nil {
				return err
			}
			for _, f := range changed {
				fmt.Fprintln(cmd.OutOrStdout(), f)
			}
			if check && len(changed) > 0 {
				return reportedError{exitFailed}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only list the files that are out of date; exit 1 if any")
	cmd.Flags().StringVar(&man, "man", "", "write man pages to this directory instead")
	return cmd
}

// docsRoot is a root command for documentation: the real tree, with
// cobra's generated-on date left out so that the output is stable.
func docsRoot() *cobra.Command {
	root := newRootCmd()
	root.DisableAutoGenTag = true
	return root
}

func writeMan(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man: %w", err)
	}
	hdr := &doc.GenManHeader{Title: "IMSBUILD", Section: "1", Source: "imsbuild " + version, Manual: "imsbuild manual"}
	if err := doc.GenManTree(docsRoot(), hdr, dir); err != nil {
		return fmt.Errorf("man: %w", err)
	}
	return nil
}

// updateDocs regenerates the marked parts of every Markdown file under
// root/docs. With write it rewrites the files that differ; it returns them
// either way. Every block of spec.BlockDocs must have its table somewhere.
func updateDocs(root string, write bool) ([]string, error) {
	blocks := map[string]spec.BlockDoc{}
	for _, b := range spec.BlockDocs() {
		blocks[b.ID] = b
	}
	placed := map[string]bool{}
	var changed []string
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".md") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var genErr error
		out := markerRE.ReplaceAllFunc(src, func(m []byte) []byte {
			sub := markerRE.FindSubmatch(m)
			kind, arg := string(sub[1]), strings.TrimSpace(string(sub[2]))
			body, err := generated(kind, arg, blocks)
			if err != nil {
				genErr = errors.Join(genErr, fmt.Errorf("%s: %w", path, err))
				return m
			}
			if kind == "attributes" {
				placed[arg] = true
			}
			return []byte(fmt.Sprintf("<!-- generated:%s%s -->\n%s<!-- end generated -->", kind, sub[2], body))
		})
		if genErr != nil {
			return genErr
		}
		if bytes.Equal(src, out) {
			return nil
		}
		changed = append(changed, path)
		if write {
			return os.WriteFile(path, out, 0o644)
		}
		return nil
	})
	if err != nil {
		return changed, fmt.Errorf("docs: %w", err)
	}
	var missing []string
	for id := range blocks {
		if !placed[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return changed, fmt.Errorf("docs: no page has the attribute table of %s; add <!-- generated:attributes ID --> <!-- end generated --> to one", strings.Join(missing, ", "))
	}
	return changed, nil
}

// generated returns the Markdown of one marked part, ending in a newline.
func generated(kind, arg string, blocks map[string]spec.BlockDoc) (string, error) {
	switch kind {
	case "attributes":
		b, ok := blocks[arg]
		if !ok {
			return "", fmt.Errorf("no block %q in the schemas", arg)
		}
		return attrTable(b), nil
	case "functions":
		var b strings.Builder
		for i, name := range spec.FunctionNames() {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "`%s`", name)
		}
		b.WriteString("\n")
		return b.String(), nil
	case "cli":
		return cliReference()
	}
	return "", fmt.Errorf("unknown generated part %q", kind)
}

// attrTable renders the arguments of b as a Markdown table.
func attrTable(b spec.BlockDoc) string {
	var s strings.Builder
	fmt.Fprintf(&s, "`%s`\n\n", b.Header)
	// Blocks none of whose arguments enter a key (publish, interactive)
	// leave the column out; the page says why.
	keyed := slices.ContainsFunc(b.Attrs, func(a spec.AttrDoc) bool { return a.Key != "" })
	if keyed {
		s.WriteString("| Argument | Type | Default | Description | Cache key |\n|---|---|---|---|---|\n")
	} else {
		s.WriteString("| Argument | Type | Default | Description |\n|---|---|---|---|\n")
	}
	for _, a := range b.Attrs {
		def := a.Default
		if a.Required {
			def = "**required**"
		} else if def == "" {
			def = "—"
		} else if strings.HasPrefix(def, `"`) || strings.HasPrefix(def, "[") {
			def = "`" + def + "`"
		}
		desc := a.Description
		if a.Example != "" {
			desc += fmt.Sprintf(" Example: `%s = %s`", a.Name, a.Example)
		}
		key := a.Key
		if key == "" {
			key = "—"
		}
		fmt.Fprintf(&s, "| `%s` | %s | %s | %s |", a.Name, cell(codeType(a.Type)), cell(def), cell(desc))
		if keyed {
			fmt.Fprintf(&s, " %s |", cell(key))
		}
		s.WriteString("\n")
	}
	if len(b.Blocks) > 0 {
		s.WriteString("\nNested blocks: ")
		for i, n := range b.Blocks {
			if i > 0 {
				s.WriteString(", ")
			}
			fmt.Fprintf(&s, "`%s`", n)
		}
		s.WriteString(".\n")
	}
	return s.String()
}

// codeType sets a type in code font unless it has prose in parentheses.
func codeType(t string) string {
	if base, rest, ok := strings.Cut(t, " ("); ok {
		return "`" + base + "` (" + rest
	}
	return "`" + t + "`"
}

// cell escapes what would end a table cell.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// cliReference renders every visible command with cobra's Markdown
// generator on one page; links between commands become anchors.
func cliReference() (string, error) {
	var b bytes.Buffer
	link := func(name string) string {
		return "#" + strings.ReplaceAll(strings.TrimSuffix(name, ".md"), "_", "-")
	}
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !c.IsAvailableCommand() && c.HasParent() {
			return nil
		}
		var one bytes.Buffer
		if err := doc.GenMarkdownCustom(c, &one, link); err != nil {
			return err
		}
		// One level down, under the page's "## Commands"; the global
		// options are listed once, at imsbuild, not under every command.
		fences := -1 // counts the fences of the inherited-options section
		for _, line := range strings.SplitAfter(one.String(), "\n") {
			switch {
			case strings.HasPrefix(line, "### Options inherited from parent commands"):
				fences = 0
				continue
			case fences >= 0:
				if strings.HasPrefix(line, "```") {
					fences++
				}
				if fences == 2 && !strings.HasPrefix(line, "```") {
					fences = -1 // the blank line after the block
				}
				continue
			case strings.HasPrefix(line, "#"):
				line = "#" + line
			}
			b.WriteString(line)
		}
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(docsRoot()); err != nil {
		return "", fmt.Errorf("cli reference: %w", err)
	}
	return b.String(), nil
}
