package main

import (
	"testing"

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/spec"
)

// TestWriteK8sBuild: the generated build loads without diagnostics and is
// the graph the benchmark describes: one import, the rest customize
// images each adding a file of its own, depths 1 to 5.
func TestWriteK8sBuild(t *testing.T) {
	for _, steps := range []int{2, 9, 1000} {
		dir := t.TempDir()
		if err := writeK8sBuild(dir, steps); err != nil {
			t.Fatalf("writeK8sBuild(%d) = %v", steps, err)
		}
		cfg, diags := spec.Load(dir, spec.Options{})
		if diags.HasErrors() {
			t.Fatalf("steps %d: Load() = %v", steps, diags)
		}
		g, err := engine.NewGraph(cfg)
		if err != nil {
			t.Fatalf("steps %d: NewGraph() = %v", steps, err)
		}
		if len(g.Steps) != steps {
			t.Errorf("steps %d: %d steps in the graph", steps, len(g.Steps))
		}
		depth := map[string]int{}
		maxDepth := 0
		for _, s := range g.Steps { // topological order: parents first
			img := s.Image
			switch {
			case s.ID == "image.base":
				if img.Import == "" || len(s.Deps) != 0 {
					t.Errorf("steps %d: base is not an import without parents", steps)
				}
				depth[s.ID] = 1
			case len(s.Deps) != 1 || len(img.Customize) != 1 || len(img.Customize[0].Files) != 1:
				t.Errorf("steps %d: %s has %d parents and %d customize blocks, want one of each adding one file", steps, s.ID, len(s.Deps), len(img.Customize))
			default:
				depth[s.ID] = depth[s.Deps[0].ID] + 1
			}
			maxDepth = max(maxDepth, depth[s.ID])
		}
		if want := min(steps, 5); maxDepth != want {
			t.Errorf("steps %d: deepest image at depth %d, want %d", steps, maxDepth, want)
		}
	}
}
