package spec

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// envVarPrefix prefixes the environment variables that set input variables.
const envVarPrefix = "IMSBUILD_VAR_"

// variable is a declared input variable and the value it ended up with.
type variable struct {
	name        string
	block       *hcl.Block
	typ         cty.Type // cty.DynamicPseudoType when not declared
	validations []validation

	set      bool
	value    cty.Value // cty.DynamicVal after an error
	valRange hcl.Range // where the value came from

	sensitive bool // sensitive = true: the value is marked sensitiveMark
}

type validation struct {
	cond, msg hcl.Expression
	rng       hcl.Range
}

// funcCtx evaluates literals and function calls but no references.
func (l *loader) funcCtx() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: l.ctx.Functions}
}

// decodeVariables declares the variables and assigns their values with
// Packer's precedence: default, IMSBUILD_VAR_<name>, -var-file files in
// order, then -var flags in order; later wins.
func (l *loader) decodeVariables() {
	for _, b := range l.variables {
		l.declareVariable(b)
	}
	names := keys(l.varDecls)
	for _, name := range names {
		v := l.varDecls[name]
		raw, ok := l.env[envVarPrefix+name]
		if !ok {
			continue
		}
		file := "env " + envVarPrefix + name
		l.setRaw(v, file, raw, hcl.InitialPos)
	}
	for _, path := range l.opts.VarFiles {
		l.varFile(path)
	}
	for _, arg := range l.opts.Vars {
		l.varFlag(arg)
	}
	vals := map[string]cty.Value{}
	for _, name := range names {
		v := l.varDecls[name]
		if !v.set {
			l.errorf(v.block.LabelRanges[0], "No value for required variable",
				"The variable %q has no default; set it with -var %s=..., a -var-file or %s%s.", name, name, envVarPrefix, name)
			v.value = cty.DynamicVal
		}
		l.validate(v)
		vals[name] = v.value
		l.cfg.Variables[name] = Variable{Value: v.value, Sensitive: v.sensitive}
		if v.sensitive {
			l.addSensitive(v.value)
			vals[name] = v.value.Mark(sensitiveMark)
		}
	}
	l.ctx.Variables["var"] = cty.ObjectVal(vals)
}

func (l *loader) declareVariable(b *hcl.Block) {
	if !l.validName(b, 0) {
		return
	}
	name := b.Labels[0]
	if prev, ok := l.varDecls[name]; ok {
		l.duplicate(b, prev.block, "variable "+`"`+name+`"`, "Variable names must be unique within a build")
		return
	}
	v := &variable{name: name, block: b, typ: cty.DynamicPseudoType}
	l.varDecls[name] = v
	c := l.content(b.Body, variableSchema)
	if attr := c.Attributes["type"]; attr != nil {
		ty, diags := typeexpr.TypeConstraint(attr.Expr)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			v.set, v.value, v.valRange = true, cty.DynamicVal, attr.Expr.Range()
		} else {
			v.typ = ty
		}
	}
	a := l.attrs(c.Attributes, l.funcCtx())
	var desc string
	a.str("description", &desc)
	a.boolean("sensitive", &v.sensitive)
	if attr := c.Attributes["default"]; attr != nil && !v.set {
		def, diags := attr.Expr.Value(l.funcCtx())
		l.diags = append(l.diags, diags...)
		if v.sensitive {
			l.addSensitive(l.unmark(def))
		}
		if diags.HasErrors() {
			v.set, v.value, v.valRange = true, cty.DynamicVal, attr.Expr.Range()
		} else {
			l.assign(v, def, attr.Expr.Range(), "default value")
		}
	}
	for _, vb := range c.Blocks.OfType("validation") {
		vc := l.content(vb.Body, validationSchema)
		cond, msg := vc.Attributes["condition"], vc.Attributes["error_message"]
		if cond != nil && msg != nil {
			v.validations = append(v.validations, validation{cond: cond.Expr, msg: msg.Expr, rng: vb.DefRange})
		}
	}
}

// assign converts val to the variable's type and makes it the value.
func (l *loader) assign(v *variable, val cty.Value, rng hcl.Range, what string) {
	cv, err := convert.Convert(val, v.typ)
	if err != nil {
		l.errorf(rng, "Invalid value for variable",
			"The %s for variable %q is not a %s: %s.", what, v.name, typeexpr.TypeString(v.typ), convertMessage(err))
		v.set, v.value, v.valRange = true, cty.DynamicVal, rng
		return
	}
	v.set, v.value, v.valRange = true, cv, rng
}

// setRaw sets v from a string given outside HCL files (-var, environment).
// The text is the value itself for string and untyped variables, and an
// HCL expression ("[\"a\", \"b\"]") for other types.
func (l *loader) setRaw(v *variable, file, raw string, start hcl.Pos) {
	l.extraFile(file, raw)
	if v.sensitive {
		l.sensitive[raw] = true // even when it is no valid value
	}
	end := start
	end.Byte += len(raw)
	end.Column += len([]rune(raw))
	rng := hcl.Range{Filename: file, Start: start, End: end}
	if v.typ == cty.String || v.typ == cty.DynamicPseudoType {
		l.assign(v, cty.StringVal(raw), rng, "value")
		return
	}
	tokens, _ := hclsyntax.LexExpression([]byte(raw), file, start)
	if d := checkNesting(tokens); d != nil {
		l.addDiag(d)
		v.set, v.value, v.valRange = true, cty.DynamicVal, rng
		return
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), file, start)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		v.set, v.value, v.valRange = true, cty.DynamicVal, rng
		return
	}
	if _, bare := expr.(*hclsyntax.ScopeTraversalExpr); bare {
		// A bare word like high or sometimes: convert the text itself, so the
		// diagnostic says which type was wanted.
		l.assign(v, cty.StringVal(raw), rng, "value")
		return
	}
	val, diags := expr.Value(nil)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		v.set, v.value, v.valRange = true, cty.DynamicVal, rng
		return
	}
	l.assign(v, val, rng, "value")
}

// extraFile makes a value given outside of files printable in snippets.
func (l *loader) extraFile(name, text string) {
	l.cfg.Files[name] = &hcl.File{Body: hcl.EmptyBody(), Bytes: []byte(text)}
}

// varFlag applies one -var name=value flag.
func (l *loader) varFlag(arg string) {
	file := "-var " + arg
	name, raw, ok := strings.Cut(arg, "=")
	if v := l.varDecls[name]; ok && v != nil && v.sensitive {
		// The name of this pseudo-file is printed with every diagnostic
		// about the value; its text is masked like a -var-file's.
		file = "-var " + name + "=" + Redacted
	}
	nameRange := hcl.Range{Filename: file, Start: hcl.InitialPos,
		End: hcl.Pos{Line: 1, Column: 1 + len([]rune(name)), Byte: len(name)}}
	l.extraFile(file, arg)
	if !ok {
		l.errorf(nameRange, "Invalid -var option", "The -var option %q is not of the form name=value.", arg)
		return
	}
	v := l.varDecls[name]
	if v == nil {
		l.errorf(nameRange, "Value for undeclared variable",
			"A -var option sets %q, but no variable of that name is declared.%s", name, didYouMean(name, keys(l.varDecls)))
		return
	}
	l.setRaw(v, file, raw, hcl.Pos{Line: 1, Column: 2 + len([]rune(name)), Byte: len(name) + 1})
	l.extraFile(file, arg)
}

// varFile applies a -var-file: an HCL file of name = value attributes.
func (l *loader) varFile(path string) {
	n := len(l.diags)
	f := l.parseFile(path, "Cannot read variable file")
	if f == nil || l.diags[n:].HasErrors() {
		return
	}
	attrs, diags := f.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	for _, attr := range sortedAttrs(attrs) {
		v := l.varDecls[attr.Name]
		if v == nil {
			l.errorf(attr.NameRange, "Value for undeclared variable",
				"The variable file sets %q, but no variable of that name is declared.%s", attr.Name, didYouMean(attr.Name, keys(l.varDecls)))
			continue
		}
		val, diags := attr.Expr.Value(nil)
		l.diags = append(l.diags, diags...)
		if v.sensitive {
			l.addSensitive(val)
		}
		if diags.HasErrors() {
			v.set, v.value, v.valRange = true, cty.DynamicVal, attr.Expr.Range()
			continue
		}
		l.assign(v, val, attr.Expr.Range(), "value")
	}
}

// sortedAttrs returns attrs in source order.
func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, name := range keys(attrs) {
		out = append(out, attrs[name])
	}
	slicesSortByPos(out)
	return out
}

// validate runs the validation blocks of v against its value.
func (l *loader) validate(v *variable) {
	if !v.value.IsWhollyKnown() {
		return
	}
	val := v.value
	if v.sensitive {
		val = val.Mark(sensitiveMark)
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.name: val})},
		Functions: l.ctx.Functions,
	}
	for _, rule := range v.validations {
		res, diags := rule.cond.Value(ctx)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		res, err := convert.Convert(l.unmark(res), cty.Bool)
		if err != nil || res.IsNull() {
			l.errorf(rule.cond.Range(), "Invalid validation condition", "The condition must be a bool.")
			continue
		}
		if !res.IsKnown() || res.True() {
			continue
		}
		msg := "The value is not valid."
		if m, diags := rule.msg.Value(ctx); !diags.HasErrors() && m.Type() == cty.String && m.IsKnown() && !m.IsNull() {
			msg = l.unmark(m).AsString() // masked with the other diagnostics
		}
		l.errorf(v.valRange, "Invalid value for variable",
			"%s\n\nThis was checked by the validation rule at %s.", msg, posString(rule.rng))
	}
}
