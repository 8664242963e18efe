package spec

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// evalLocals evaluates every locals attribute in dependency order. A local
// may use variables, functions and other locals; cycles are reported once.
func (l *loader) evalLocals() {
	for _, b := range l.locals {
		attrs, diags := b.Body.JustAttributes()
		l.diags = append(l.diags, diags...)
		for _, attr := range sortedAttrs(attrs) {
			if prev, ok := l.localAttrs[attr.Name]; ok {
				l.errorf(attr.NameRange, "Duplicate local value",
					"A local value named %q was already defined at %s. Local value names must be unique within a build.", attr.Name, posString(prev.Range))
				continue
			}
			l.localAttrs[attr.Name] = attr
		}
	}
	e := &localEval{l: l, vals: map[string]cty.Value{}, state: map[string]int{}}
	for _, name := range keys(l.localAttrs) {
		if l.runCtx.Err() != nil {
			break // load reports it after this phase
		}
		e.visit(name, nil)
	}
	l.ctx.Variables["local"] = cty.ObjectVal(e.vals)
}

type localEval struct {
	l     *loader
	vals  map[string]cty.Value
	state map[string]int // 0 new, 1 visiting, 2 done
}

const (
	visiting = 1
	done     = 2
)

// visit evaluates local name after its dependencies; stack is the chain of
// locals being evaluated, for the cycle message.
func (e *localEval) visit(name string, stack []string) {
	switch e.state[name] {
	case done:
		return
	case visiting:
		return // reported by the caller that found the back edge
	}
	e.state[name] = visiting
	attr := e.l.localAttrs[name]
	stack = append(stack, name)
	cyclic := false
	for _, tr := range attr.Expr.Variables() {
		dep, rng, ok := localRef(tr)
		if !ok || e.l.localAttrs[dep] == nil {
			continue
		}
		if e.state[dep] == visiting {
			i := indexOf(stack, dep)
			chain := append(append([]string(nil), stack[i:]...), dep)
			for j := range chain {
				chain[j] = "local." + chain[j]
			}
			e.l.errorf(rng, "Circular reference between local values",
				"The local values refer to each other in a cycle: %s.", strings.Join(chain, " → "))
			for _, n := range stack[i:] {
				e.vals[n] = cty.DynamicVal
				e.state[n] = done
			}
			cyclic = true
			continue
		}
		e.visit(dep, stack)
	}
	if cyclic || e.state[name] == done {
		e.state[name] = done
		if _, ok := e.vals[name]; !ok {
			e.vals[name] = cty.DynamicVal
		}
		return
	}
	// The local sees only the locals it refers to: an object of all locals
	// evaluated so far would be rebuilt for every local, which is quadratic.
	ctx := e.l.ctx.NewChild()
	ctx.Variables = map[string]cty.Value{"local": cty.ObjectVal(e.deps(attr.Expr))}
	v, _ := e.l.eval(attr.Expr, ctx, false)
	e.vals[name] = v
	e.state[name] = done
}

// deps returns the values of the locals expr refers to.
func (e *localEval) deps(expr hcl.Expression) map[string]cty.Value {
	m := map[string]cty.Value{}
	for _, tr := range expr.Variables() {
		if dep, _, ok := localRef(tr); ok {
			if v, ok := e.vals[dep]; ok {
				m[dep] = v
			}
		}
	}
	return m
}

// localRef returns the name and range of a local.<name> (or local["name"])
// reference.
func localRef(tr hcl.Traversal) (string, hcl.Range, bool) {
	if tr.RootName() != "local" || len(tr) < 2 {
		return "", hcl.Range{}, false
	}
	switch t := tr[1].(type) {
	case hcl.TraverseAttr:
		return t.Name, hcl.RangeOver(tr[0].SourceRange(), t.SrcRange), true
	case hcl.TraverseIndex:
		if t.Key.Type() == cty.String && t.Key.IsKnown() && !t.Key.IsNull() {
			return t.Key.AsString(), hcl.RangeOver(tr[0].SourceRange(), t.SrcRange), true
		}
	}
	return "", hcl.Range{}, false
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return 0
}
