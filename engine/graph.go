package engine

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/spec"
)

// Kinds of steps.
const (
	KindImport    = steps.KindImport
	KindCustomize = steps.KindCustomize
	KindKiwi      = steps.KindKiwi
	KindPublish   = "publish"
)

// Step is a node of the build graph.
type Step struct {
	ID      string // image.<label> | publish.<kind>.<name>
	Kind    string
	Deps    []*Step
	Image   *spec.Image   // image steps
	Publish *spec.Publish // publish steps
}

// Graph is the DAG of a build, steps in topological order.
type Graph struct {
	Steps []*Step
	byID  map[string]*Step
}

// NewGraph builds the DAG of cfg. spec.Load has already rejected cycles and
// dangling references, so errors here are bugs in spec.
func NewGraph(cfg *spec.Config) (*Graph, error) {
	g := &Graph{byID: map[string]*Step{}}
	labels := make([]string, 0, len(cfg.Images))
	for l := range cfg.Images {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		img := cfg.Images[l]
		s := &Step{ID: "image." + l, Image: img}
		switch {
		case img.From != "":
			s.Kind = KindCustomize
		case img.Recipe != "":
			s.Kind = KindKiwi
		default:
			s.Kind = KindImport
		}
		g.byID[s.ID] = s
	}
	for _, l := range labels {
		s := g.byID["image."+l]
		if from := s.Image.From; from != "" {
			p, ok := g.byID["image."+from]
			if !ok {
				return nil, fmt.Errorf("image %s: parent image %s not declared", l, from)
			}
			s.Deps = append(s.Deps, p)
		}
	}
	var pubs []*Step
	for _, p := range cfg.Publishes {
		s := &Step{ID: p.ID(), Kind: KindPublish, Publish: p}
		for _, l := range p.Images {
			d, ok := g.byID["image."+l]
			if !ok {
				return nil, fmt.Errorf("%s: image %s not declared", s.ID, l)
			}
			s.Deps = append(s.Deps, d)
		}
		g.byID[s.ID] = s
		pubs = append(pubs, s)
	}
	// An IMS registration points at a manifest another publish wrote: it
	// runs after the s3 and dir publishes of the same build.
	for _, s := range pubs {
		if s.Publish.Kind != "ims" {
			continue
		}
		for _, o := range pubs {
			if k := o.Publish.Kind; k == "s3" || k == "dir" {
				s.Deps = append(s.Deps, o)
			}
		}
	}
	order, err := topoSort(g.byID, labels, pubs)
	if err != nil {
		return nil, err
	}
	g.Steps = order
	return g, nil
}

// topoSort orders images (by label, parents first) then publishes.
func topoSort(byID map[string]*Step, labels []string, pubs []*Step) ([]*Step, error) {
	var order []*Step
	state := map[*Step]int{} // 1 visiting, 2 done
	var visit func(s *Step) error
	visit = func(s *Step) error {
		switch state[s] {
		case 1:
			return fmt.Errorf("cycle through %s", s.ID)
		case 2:
			return nil
		}
		state[s] = 1
		for _, d := range s.Deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[s] = 2
		order = append(order, s)
		return nil
	}
	for _, l := range labels {
		if err := visit(byID["image."+l]); err != nil {
			return nil, err
		}
	}
	for _, p := range pubs {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Step returns the step with id, or nil.
func (g *Graph) Step(id string) *Step { return g.byID[id] }

// Select returns the steps needed for targets (each "image.x" or
// "publish.kind.name", or a bare image label), in topological order. No
// targets selects everything.
func (g *Graph) Select(targets []string) ([]*Step, error) {
	if len(targets) == 0 {
		return g.Steps, nil
	}
	want := map[*Step]bool{}
	var add func(s *Step)
	add = func(s *Step) {
		if want[s] {
			return
		}
		want[s] = true
		for _, d := range s.Deps {
			add(d)
		}
	}
	for _, t := range targets {
		s := g.byID[t]
		if s == nil {
			s = g.byID["image."+t]
		}
		if s == nil {
			return nil, &UnknownTargetError{Target: t, Known: g.ids()}
		}
		add(s)
	}
	var out []*Step
	for _, s := range g.Steps {
		if want[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

func (g *Graph) ids() []string {
	ids := make([]string, 0, len(g.Steps))
	for _, s := range g.Steps {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

// WriteDOT prints the graph in Graphviz DOT, edges from dependency to dependent.
func (g *Graph) WriteDOT(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph imsbuild {\n  rankdir=LR;\n  node [shape=box];\n")
	for _, s := range g.Steps {
		fmt.Fprintf(&b, "  %q [label=%q];\n", s.ID, s.ID+"\\n("+s.Kind+")")
	}
	for _, s := range g.Steps {
		for _, d := range s.Deps {
			fmt.Fprintf(&b, "  %q -> %q;\n", d.ID, s.ID)
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// UnknownTargetError is a target that names no step; the CLI reports it as
// a usage error.
type UnknownTargetError struct {
	Target string
	Known  []string // the step IDs there are
}

func (e *UnknownTargetError) Error() string {
	return fmt.Sprintf("unknown target %q (want one of: %s)", e.Target, strings.Join(e.Known, ", "))
}
