package spec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format rewrites every *.ims.hcl file of dir in canonical form
// (hclwrite.Format). With check it writes nothing. It returns the files that
// changed (or would change), as dir joined with the file name. A file with
// syntax errors is left alone and reported in err as a *SyntaxError, after
// the other files are formatted.
func Format(dir string, check bool) (changed []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("format %s: %w", dir, err)
	}
	syntax := &SyntaxError{Files: map[string]*hcl.File{}}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), buildFileSuffix) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		ok, err := formatFile(name, check, syntax)
		if err != nil {
			return changed, err
		}
		if ok {
			changed = append(changed, name)
		}
	}
	if syntax.Diags.HasErrors() {
		return changed, syntax
	}
	return changed, nil
}

// SyntaxError lists the syntax errors of the files Format left alone;
// Files holds their source for the diagnostics' snippets.
type SyntaxError struct {
	Files map[string]*hcl.File
	Diags hcl.Diagnostics
}

func (e *SyntaxError) Error() string { return e.Diags.Error() }

func formatFile(name string, check bool, syntax *SyntaxError) (bool, error) {
	src, err := readRegular(context.Background(), name, maxBuildFileSize)
	if err != nil {
		return false, fmt.Errorf("format %s: %w", name, err)
	}
	tokens, _ := hclsyntax.LexConfig(src, name, hcl.InitialPos)
	if d := checkNesting(tokens); d != nil {
		syntax.Diags = append(syntax.Diags, d)
		return false, nil
	}
	if f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos); diags.HasErrors() {
		syntax.Files[name] = f
		syntax.Diags = append(syntax.Diags, diags...)
		return false, nil
	}
	out := hclwrite.Format(src)
	if bytes.Equal(src, out) {
		return false, nil
	}
	if check {
		return true, nil
	}
	fi, err := os.Stat(name)
	if err != nil {
		return false, fmt.Errorf("format %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".fmt-*")
	if err != nil {
		return false, fmt.Errorf("format %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return false, fmt.Errorf("format %s: %w", name, err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return false, fmt.Errorf("format %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("format %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return false, fmt.Errorf("format %s: %w", name, err)
	}
	return true, nil
}
