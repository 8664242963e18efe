package spec

import (
	"bytes"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// sensitiveMark marks the value of a variable declared sensitive = true.
// The mark travels with everything computed from the value: HCL operators
// and templates keep marks, and the function framework strips them before
// a function runs and puts them on its result (no function here sets
// AllowMarked), so base64encode(var.token) is as sensitive as var.token.
type mark string

const sensitiveMark mark = "sensitive"

// Redacted replaces a sensitive value wherever imsbuild prints or stores
// text, as Terraform prints it.
const Redacted = "(sensitive value)"

// MinSensitiveLen is the shortest sensitive value that Redact replaces in
// free text: masking "1" or "on" in every log line would garble logs
// without protecting anything, as CI systems refuse to mask such values.
// Key preimages treat shorter values as sensitive all the same.
const MinSensitiveLen = 3

// addSensitive records the string and number leaves of v (unmarked) as
// sensitive text.
func (l *loader) addSensitive(v cty.Value) {
	if v.IsNull() || !v.IsKnown() {
		return
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		l.sensitive[v.AsString()] = true
	case ty == cty.Number:
		l.sensitive[v.AsBigFloat().Text('f', -1)] = true
	case ty.IsCollectionType() || ty.IsObjectType() || ty.IsTupleType():
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if ty.IsMapType() || ty.IsObjectType() {
				l.sensitive[k.AsString()] = true
			}
			l.addSensitive(e)
		}
	}
}

// unmark returns v without marks, recording the parts of it that were
// marked sensitive so that the engine can keep them out of keys and logs.
// A number is recorded as the text a conversion to string gives.
func (l *loader) unmark(v cty.Value) cty.Value {
	uv, pvms := v.UnmarkDeepWithPaths()
	for _, pvm := range pvms {
		if _, ok := pvm.Marks[sensitiveMark]; !ok {
			continue
		}
		if part, err := pvm.Path.Apply(uv); err == nil {
			l.addSensitive(part)
		}
	}
	return uv
}

// sensitiveList returns the recorded sensitive texts, longest first.
func (l *loader) sensitiveList() []string {
	out := make([]string, 0, len(l.sensitive))
	for s := range l.sensitive {
		if s != "" {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) > len(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

// NewRedactor returns a function that replaces every occurrence of the
// values (at least MinSensitiveLen bytes long) in a text by Redacted.
func NewRedactor(values []string) func(string) string {
	sorted := slices.Clone(values)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	var pairs []string
	for _, v := range sorted {
		if len(v) >= MinSensitiveLen {
			pairs = append(pairs, v, Redacted)
		}
	}
	if len(pairs) == 0 {
		return func(s string) string { return s }
	}
	// The replacer tries the pairs in order at each position: longest
	// first masks the longer of two overlapping values.
	return strings.NewReplacer(pairs...).Replace
}

// redactDiagnostics keeps sensitive values out of what the CLI prints: the
// summary and detail of every diagnostic, and the snippets of the texts
// that are not build files (-var flags, IMSBUILD_VAR_ values, -var-file
// files), whose sensitive values are overwritten with '*' so that ranges
// stay valid. Build files are shown as written: a sensitive default there
// is no secret from whoever reads the build.
func (l *loader) redactDiagnostics(buildFiles map[string]bool) {
	values := l.sensitiveList()
	if len(values) == 0 {
		return
	}
	redact := NewRedactor(values)
	for _, d := range l.diags {
		d.Summary = redact(d.Summary)
		d.Detail = redact(d.Detail)
	}
	for name, f := range l.cfg.Files {
		if buildFiles[name] || f == nil {
			continue
		}
		b := f.Bytes
		masked := false
		for _, v := range values {
			if len(v) < MinSensitiveLen {
				continue
			}
			for i := bytes.Index(b, []byte(v)); i >= 0; i = bytes.Index(b, []byte(v)) {
				if !masked {
					b = bytes.Clone(b)
					masked = true
				}
				copy(b[i:i+len(v)], bytes.Repeat([]byte{'*'}, len(v)))
			}
		}
		if masked {
			l.cfg.Files[name] = &hcl.File{Body: f.Body, Bytes: b, Nav: f.Nav}
		}
	}
}
