package spec

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints each diagnostic as "file:line:col: error: Summary"
// followed by the source snippet and the detail, as hcl's text writer
// renders them from files (Config.Files).
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
		var buf bytes.Buffer
		if err := hcl.NewDiagnosticTextWriter(&buf, files, 100, color).WriteDiagnostic(d); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
		// The text writer starts with its own "Error: Summary" line.
		_, rest, _ := strings.Cut(buf.String(), "\n\n")
		if _, err := io.WriteString(w, rest); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
	}
	return nil
}
