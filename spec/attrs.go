package spec

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// attrs decodes the arguments of one block body. Each method leaves dst
// alone when the argument is absent, null, unknown (it depends on an error
// reported elsewhere) or invalid (then it adds a diagnostic), and returns
// the attribute only when it set dst.
type attrs struct {
	l    *loader
	m    hcl.Attributes
	ctx  *hcl.EvalContext
	self bool // image.name etc. allowed (publish blocks)
}

func (l *loader) attrs(m hcl.Attributes, ctx *hcl.EvalContext) attrs {
	return attrs{l: l, m: m, ctx: ctx}
}

// eval evaluates expr after checking its references. ok is false when
// the value is unusable: an error was reported, or it is not wholly known.
func (l *loader) eval(expr hcl.Expression, ctx *hcl.EvalContext, self bool) (cty.Value, bool) {
	if !l.checkRefs(expr, self) {
		return cty.DynamicVal, false
	}
	v, diags := expr.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() || !v.IsWhollyKnown() {
		return cty.DynamicVal, false
	}
	return v, true
}

// value evaluates the named argument and converts it to ty.
func (a attrs) value(name string, ty cty.Type) (cty.Value, *hcl.Attribute) {
	attr := a.m[name]
	if attr == nil {
		return cty.NilVal, nil
	}
	v, ok := a.l.eval(attr.Expr, a.ctx, a.self)
	if !ok || v.IsNull() {
		return cty.NilVal, nil
	}
	// Decoded values are plain Go values: the sensitive parts are recorded
	// in Config.Sensitive instead.
	v = a.l.unmark(v)
	cv, err := convert.Convert(v, ty)
	if err != nil {
		a.l.errorf(attr.Expr.Range(), "Incorrect attribute value type",
			"Inappropriate value for attribute %q: %s.", name, convertMessage(err))
		return cty.NilVal, nil
	}
	if !cv.IsWhollyKnown() {
		return cty.NilVal, nil
	}
	return cv, attr
}

func convertMessage(err error) string {
	if pe, ok := err.(cty.PathError); ok && len(pe.Path) > 0 {
		return fmt.Sprintf("%s%s", formatPath(pe.Path), pe.Error())
	}
	return err.Error()
}

func formatPath(p cty.Path) string {
	var b strings.Builder
	for _, s := range p {
		switch s := s.(type) {
		case cty.IndexStep:
			if s.Key.Type() == cty.Number {
				bf := s.Key.AsBigFloat()
				i, _ := bf.Int64()
				fmt.Fprintf(&b, "element %d: ", i)
			} else if s.Key.Type() == cty.String {
				fmt.Fprintf(&b, "element %q: ", s.Key.AsString())
			}
		case cty.GetAttrStep:
			fmt.Fprintf(&b, "attribute %q: ", s.Name)
		}
	}
	return b.String()
}

func (a attrs) str(name string, dst *string) *hcl.Attribute {
	v, attr := a.value(name, cty.String)
	if attr != nil {
		*dst = v.AsString()
	}
	return attr
}

// oneOf decodes a string that must be one of allowed.
func (a attrs) oneOf(name string, dst *string, allowed ...string) *hcl.Attribute {
	var s string
	attr := a.str(name, &s)
	if attr == nil {
		return nil
	}
	if !slices.Contains(allowed, s) {
		a.l.errorf(attr.Expr.Range(), "Invalid "+name,
			"%q is not a valid %s; use one of %s.%s", s, name, quoteList(allowed), didYouMean(s, allowed))
		return nil
	}
	*dst = s
	return attr
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func (a attrs) boolean(name string, dst *bool) *hcl.Attribute {
	v, attr := a.value(name, cty.Bool)
	if attr != nil {
		*dst = v.True()
	}
	return attr
}

// integer decodes a whole number that fits an int32.
func (a attrs) integer(name string, dst *int) *hcl.Attribute {
	v, attr := a.value(name, cty.Number)
	if attr == nil {
		return nil
	}
	i, acc := v.AsBigFloat().Int64()
	if acc != big.Exact || i < -1<<31 || i > 1<<31-1 {
		a.l.errorf(attr.Expr.Range(), "Invalid "+name, "%s must be a whole number, not %s.", name, v.AsBigFloat().Text('g', -1))
		return nil
	}
	*dst = int(i)
	return attr
}

func (a attrs) strs(name string, dst *[]string) *hcl.Attribute {
	v, attr := a.value(name, cty.List(cty.String))
	if attr == nil {
		return nil
	}
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		i, e := it.Element()
		if e.IsNull() {
			idx, _ := i.AsBigFloat().Int64()
			a.l.errorf(attr.Expr.Range(), "Invalid "+name, "Element %d of %s is null.", idx, name)
			return nil
		}
		out = append(out, e.AsString())
	}
	*dst = out
	return attr
}

func (a attrs) strMap(name string, dst *map[string]string) *hcl.Attribute {
	v, attr := a.value(name, cty.Map(cty.String))
	if attr == nil {
		return nil
	}
	out := make(map[string]string, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if e.IsNull() {
			a.l.errorf(attr.Expr.Range(), "Invalid "+name, "The value of %q in %s is null.", k.AsString(), name)
			return nil
		}
		out[k.AsString()] = e.AsString()
	}
	*dst = out
	return attr
}

// duration decodes a Go duration string ("10m", "2h30m") that is not negative.
func (a attrs) duration(name string, dst *time.Duration) *hcl.Attribute {
	var s string
	attr := a.str(name, &s)
	if attr == nil {
		return nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		a.l.errorf(attr.Expr.Range(), "Invalid duration",
			"%q is not a valid duration for %s; use a number with a unit, like \"90s\", \"10m\" or \"2h\".", s, name)
		return nil
	case d < 0:
		a.l.errorf(attr.Expr.Range(), "Invalid duration", "%s must not be negative, got %q.", name, s)
		return nil
	}
	*dst = d
	return attr
}

// path decodes a path and resolves it against the build directory.
func (a attrs) path(name string, dst *string) *hcl.Attribute {
	var s string
	attr := a.str(name, &s)
	if attr == nil {
		return nil
	}
	if s == "" {
		a.l.errorf(attr.Expr.Range(), "Invalid "+name, "%s must not be empty.", name)
		return nil
	}
	*dst = a.l.r.abs(s)
	return attr
}

// pathOrURL is path that keeps URLs (s3://, ims://, ...) as they are.
func (a attrs) pathOrURL(name string, dst *string) *hcl.Attribute {
	var s string
	attr := a.str(name, &s)
	if attr == nil {
		return nil
	}
	if s == "" {
		a.l.errorf(attr.Expr.Range(), "Invalid "+name, "%s must not be empty.", name)
		return nil
	}
	*dst = a.l.r.absOrURL(s)
	return attr
}

// content decodes body against schema, adding the diagnostics.
func (l *loader) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	l.diags = append(l.diags, diags...)
	if c == nil {
		c = &hcl.BodyContent{Attributes: hcl.Attributes{}}
	}
	return c
}

// single returns the first block of type typ and reports any further one.
func (l *loader) single(blocks hcl.Blocks, typ string) *hcl.Block {
	var first *hcl.Block
	for _, b := range blocks.OfType(typ) {
		if first == nil {
			first = b
			continue
		}
		l.errorf(b.TypeRange, "Duplicate "+typ+" block",
			"A %s block was already declared at %s; a block may have only one.", typ, posString(first.DefRange))
	}
	return first
}
