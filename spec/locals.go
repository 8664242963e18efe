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
	e := &localEval{l: l, vals: map[string]cty.Value{}, state: map[string]int{}, pos: map[string]int{}, cyclic: map[string]bool{}}
	for _, name := range keys(l.localAttrs) {
		if l.runCtx.Err() != nil {
			break // load reports it after this phase
		}
		e.visit(name)
	}
	l.ctx.Variables["local"] = cty.ObjectVal(e.vals)
}

type localEval struct {
	l      *loader
	vals   map[string]cty.Value
	state  map[string]int  // 0 new, 1 visiting, 2 done
	path   []string        // the locals being visited, outermost first
	pos    map[string]int  // index in path of each local being visited
	cyclic map[string]bool // locals on a reported cycle
}

const (
	visiting = 1
	done     = 2
)

// localDep is a reference to a declared local.
type localDep struct {
	name string
	rng  hcl.Range
}

// visit evaluates local root after everything it depends on, depth first.
// The walk keeps its own stack rather than recursing: a build may chain
// hundreds of thousands of locals, and a goroutine stack that deep makes
// every garbage collection scan it (minutes, gigabytes).
func (e *localEval) visit(root string) {
	if e.state[root] != 0 {
		return
	}
	type frame struct {
		name string
		deps []localDep
		next int
	}
	var stack []frame
	push := func(name string) {
		e.state[name] = visiting
		e.pos[name] = len(e.path)
		e.path = append(e.path, name)
		stack = append(stack, frame{name: name, deps: e.localDeps(name)})
	}
	push(root)
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.next < len(f.deps) {
			d := f.deps[f.next]
			f.next++
			switch e.state[d.name] {
			case 0:
				push(d.name)
			case visiting:
				e.cycle(d)
			}
			continue
		}
		e.eval(f.name)
		e.state[f.name] = done
		delete(e.pos, f.name)
		e.path = e.path[:len(e.path)-1]
		stack = stack[:len(stack)-1]
	}
}

// localDeps lists the declared locals that local name refers to.
func (e *localEval) localDeps(name string) []localDep {
	var deps []localDep
	for _, tr := range e.l.localAttrs[name].Expr.Variables() {
		if dep, rng, ok := localRef(tr); ok && e.l.localAttrs[dep] != nil {
			deps = append(deps, localDep{dep, rng})
		}
	}
	return deps
}

// cycle reports the back edge d to a local being visited, with the chain of
// locals that closes the cycle.
func (e *localEval) cycle(d localDep) {
	members := e.path[e.pos[d.name]:]
	chain := make([]string, 0, len(members)+1)
	for _, n := range append(members, d.name) {
		chain = append(chain, "local."+n)
	}
	e.l.errorf(d.rng, "Circular reference between local values",
		"The local values refer to each other in a cycle: %s. local.%s is defined at %s.",
		strings.Join(chain, " → "), d.name, posString(e.l.localAttrs[d.name].Range))
	for _, n := range members {
		e.cyclic[n] = true
	}
}

// eval evaluates local name once everything it depends on has a value.
func (e *localEval) eval(name string) {
	if e.cyclic[name] {
		e.vals[name] = cty.DynamicVal
		return
	}
	// The local sees only the locals it refers to: an object of all locals
	// evaluated so far would be rebuilt for every local, which is quadratic.
	attr := e.l.localAttrs[name]
	ctx := e.l.ctx.NewChild()
	ctx.Variables = map[string]cty.Value{"local": cty.ObjectVal(e.deps(attr.Expr))}
	v, _ := e.l.eval(attr.Expr, ctx, false)
	e.vals[name] = v
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
