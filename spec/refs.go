package spec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// refNouns are the words used in diagnostics for each kind of reference root.
var refNouns = map[string]string{
	"var":        "input variable",
	"local":      "local value",
	"image":      "image",
	"recipe":     "recipe",
	"repository": "repository",
}

// selfAttrs are the attributes of the image being published, usable as
// image.name, image.label and image.arch inside publish blocks.
var selfAttrs = []string{"name", "label", "arch"}

// declared returns the declared names a reference root may name.
func (l *loader) declared(root string) []string {
	switch root {
	case "var":
		return keys(l.varDecls)
	case "local":
		return keys(l.localAttrs)
	case "image":
		return keys(l.imgBlocks)
	case "recipe":
		return keys(l.recBlocks)
	case "repository":
		return keys(l.repoBlocks)
	}
	return nil
}

// isDeclared reports whether root.name is declared, in constant time.
func (l *loader) isDeclared(root, name string) bool {
	switch root {
	case "var":
		return l.varDecls[name] != nil
	case "local":
		return l.localAttrs[name] != nil
	case "image":
		return l.imgBlocks[name] != nil
	case "recipe":
		return l.recBlocks[name] != nil
	case "repository":
		return l.repoBlocks[name] != nil
	}
	return false
}

// checkRefs reports every reference of expr to an undeclared variable,
// local, image, recipe or repository. It returns false if there was one, so
// the caller skips evaluating expr rather than reporting it twice. self
// allows image.name, image.label and image.arch (inside publish blocks).
func (l *loader) checkRefs(expr hcl.Expression, self bool) bool {
	ok := true
	for _, tr := range expr.Variables() {
		root := tr.RootName()
		noun, known := refNouns[root]
		if !known || len(tr) < 2 {
			continue
		}
		attr, isAttr := tr[1].(hcl.TraverseAttr)
		if !isAttr {
			continue // var["x"] and friends: evaluation reports them
		}
		if l.isDeclared(root, attr.Name) || self && root == "image" && slices.Contains(selfAttrs, attr.Name) {
			continue
		}
		ok = false
		names := l.declared(root) // sorted anew only for the message: a build may have 100k locals
		l.errorf(hcl.RangeOver(tr[0].SourceRange(), attr.SrcRange), "Reference to undeclared "+noun,
			"There is no %s named %q in this build.%s", noun, attr.Name, didYouMean(attr.Name, names))
	}
	return ok
}

// ref resolves expr, which must be a reference like image.base to a block
// of kind, to the block's name. attr names the argument, for diagnostics.
func (l *loader) ref(expr hcl.Expression, kind, attr string) (string, bool) {
	example := fmt.Sprintf("%s.<name>", kind)
	tr, diags := hcl.AbsTraversalForExpr(expr)
	if diags.HasErrors() || len(tr) != 2 {
		l.errorf(expr.Range(), "Invalid reference",
			"The %s argument must be a reference to %s block, like %s.", attr, article(kind), example)
		return "", false
	}
	name, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		l.errorf(expr.Range(), "Invalid reference",
			"The %s argument must be a reference to %s block, like %s.", attr, article(kind), example)
		return "", false
	}
	root := tr.RootName()
	if root != kind {
		what := "not a block"
		if noun, known := refNouns[root]; known {
			what = "a reference to " + article(noun)
		}
		l.errorf(tr.SourceRange(), "Invalid reference",
			"The %s argument must refer to %s block, like %s, but %s.%s is %s.", attr, article(kind), example, root, name.Name, what)
		return "", false
	}
	if !l.isDeclared(kind, name.Name) {
		names := l.declared(kind)
		l.errorf(tr.SourceRange(), "Reference to undeclared "+refNouns[kind],
			"There is no %s named %q in this build.%s", kind, name.Name, didYouMean(name.Name, names))
		return "", false
	}
	return name.Name, true
}

// refList resolves a list of references like [image.a, image.b].
func (l *loader) refList(attr *hcl.Attribute, kind string) ([]string, bool) {
	exprs, diags := hcl.ExprList(attr.Expr)
	if diags.HasErrors() {
		l.errorf(attr.Expr.Range(), "Invalid reference list",
			"The %s argument must be a list of references to %s blocks, like [%s.a, %s.b].", attr.Name, kind, kind, kind)
		return nil, false
	}
	var names []string
	seen := map[string]bool{}
	ok := true
	for _, e := range exprs {
		name, valid := l.ref(e, kind, attr.Name)
		switch {
		case !valid:
			ok = false
		case seen[name]:
			ok = false
			l.errorf(e.Range(), "Duplicate reference", "%s.%s is already in the %s list.", kind, name, attr.Name)
		default:
			seen[name] = true
			names = append(names, name)
		}
	}
	return names, ok
}

// article prefixes noun with "a" or "an".
func article(noun string) string {
	if strings.ContainsAny(noun[:1], "aeiou") {
		return "an " + noun
	}
	return "a " + noun
}
