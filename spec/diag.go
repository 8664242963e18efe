package spec

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// diagWidth is where hcl's text writer wraps details.
const diagWidth = 100

// WriteDiagnostics prints each diagnostic as "file:line:col: error: Summary"
// followed by the source snippet, the values of the variables the failing
// expression used and the detail, as hcl's text writer renders them from
// files (Config.Files) — except that a sensitive value prints as
// "(sensitive value)" and a long or multi-line string only as its size
// (hcl's writer skips the first and prints the second whole: a whole
// file() in "with local.x as ...").
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, color bool) error {
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		pos := "imsbuild"
		if d.Subject != nil {
			pos = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		if _, err := fmt.Fprintf(w, "%s: %s: %s\n", pos, sev, d.Summary); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
		// hcl renders the snippet and the detail; the values between them
		// are ours: the detail is what a second rendering adds.
		plain := *d
		plain.Expression, plain.EvalContext = nil, nil
		noDetail := plain
		noDetail.Detail = ""
		var full, head bytes.Buffer
		if err := hcl.NewDiagnosticTextWriter(&full, files, diagWidth, color).WriteDiagnostic(&plain); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
		if err := hcl.NewDiagnosticTextWriter(&head, files, diagWidth, color).WriteDiagnostic(&noDetail); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
		detail, _ := strings.CutPrefix(full.String(), head.String())
		// The text writer starts with its own "Error: Summary" line.
		_, text, _ := strings.Cut(head.String(), "\n\n")
		if stmts := valueStatements(d); len(stmts) > 0 {
			text += "with " + strings.Join(stmts, ",\n     ") + ".\n\n"
		}
		if _, err := io.WriteString(w, text+detail); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
	}
	return nil
}

// valueStatements says what each variable of d's expression was, sorted:
// "var.x as \"a\"", "local.y set to null".
func valueStatements(d *hcl.Diagnostic) []string {
	if d.Expression == nil || d.EvalContext == nil {
		return nil
	}
	var stmts []string
	seen := map[string]bool{}
	for _, tr := range d.Expression.Variables() {
		val, diags := tr.TraverseAbs(d.EvalContext)
		name := traversalString(tr)
		if diags.HasErrors() || seen[name] || !val.IsKnown() {
			continue
		}
		seen[name] = true
		switch {
		case val.ContainsMarked():
			stmts = append(stmts, name+" as "+Redacted)
		case val.IsNull():
			stmts = append(stmts, name+" set to null")
		default:
			stmts = append(stmts, name+" as "+valueString(val))
		}
	}
	sort.Strings(stmts)
	return stmts
}

func traversalString(tr hcl.Traversal) string {
	var b strings.Builder
	for _, step := range tr {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			b.WriteString(s.Name)
		case hcl.TraverseAttr:
			b.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			if k := s.Key; !k.IsMarked() && k.IsKnown() && !k.IsNull() && k.Type().IsPrimitiveType() {
				b.WriteString("[" + valueString(k) + "]")
			} else {
				b.WriteString("[...]")
			}
		}
	}
	return b.String()
}

// maxShownString is the longest string a diagnostic shows.
const maxShownString = 64

// valueString renders an unmarked, known value briefly.
func valueString(v cty.Value) string {
	ty := v.Type()
	switch {
	case v.IsNull():
		return "null"
	case ty == cty.Bool:
		return fmt.Sprint(v.True())
	case ty == cty.Number:
		return v.AsBigFloat().Text('g', 10)
	case ty == cty.String:
		s := v.AsString()
		if len(s) > maxShownString || strings.Contains(s, "\n") {
			return fmt.Sprintf("a string of %d bytes", len(s))
		}
		return fmt.Sprintf("%q", s)
	case ty.IsCollectionType() || ty.IsTupleType():
		switch n := v.LengthInt(); n {
		case 0:
			return "empty " + ty.FriendlyName()
		case 1:
			return ty.FriendlyName() + " with 1 element"
		default:
			return fmt.Sprintf("%s with %d elements", ty.FriendlyName(), n)
		}
	case ty.IsObjectType():
		return fmt.Sprintf("object with %d attributes", len(ty.AttributeTypes()))
	}
	return ty.FriendlyName()
}
