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
	ctx := e.l.ctx.NewChild()
	ctx.Variables = map[string]cty.Value{"local": cty.ObjectVal(e.vals)}
	v, _ := e.l.eval(attr.Expr, ctx, false)
	e.vals[name] = v
	e.state[name] = done
}

// localRef returns the name and range of a local.<name> reference.
func localRef(tr hcl.Traversal) (string, hcl.Range, bool) {
	if tr.RootName() != "local" || len(tr) < 2 {
		return "", hcl.Range{}, false
	}
	a, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		return "", hcl.Range{}, false
	}
	return a.Name, hcl.RangeOver(tr[0].SourceRange(), a.SrcRange), true
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return 0
}
