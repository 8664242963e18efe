// Package depcheck pins the dependency direction of DESIGN §2:
// cmd → engine → {builders, cache, publish} → spec, ims; builders and
// publish do not import cache.
package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/imsbuild/imsbuild/"

// forbidden lists, for each package prefix, the package prefixes it must not import.
var forbidden = map[string][]string{
	"ims":   {"spec", "engine", "cache", "builders", "publish", "cmd", "internal"},
	"spec":  {"engine", "cache", "builders", "publish", "cmd", "ims/server"},
	"cache": {"engine", "builders", "publish", "cmd", "spec"},
	// Builders and publishers get narrow interfaces of their own (a blob
	// store, publish.Blobs) that the engine adapts the cache to, so that
	// they are tested with small fakes and a cache change stops at the engine.
	"builders": {"engine", "publish", "cmd", "ims/server", "cache"},
	"publish":  {"engine", "builders", "cmd", "ims/server", "cache"},
	"engine":   {"cmd", "ims/server"},
	"internal": {"engine", "builders", "publish", "cmd", "spec", "cache"},
	// ims/server is the service above the leaf ims (DESIGN §2: → engine,
	// publish); the "ims" rule does not cover it.
	"ims/server": {"cmd"},
	// An executor runs a step elsewhere and knows only the seam's Step:
	// the engine does not import client-go, nor an executor the engine.
	"executor": {"engine", "builders", "publish", "cmd", "spec", "cache", "ims"},
}

// exceptions lift one ban for one package, each with its reason.
var exceptions = map[string][]string{
	// The step seam stores what a step built: it is the one builder
	// package that holds the engine's cache.Store, so that the builders
	// proper never see the cache.
	"builders/steps": {"cache"},
}

// engineBuilders are the only builders the engine imports: the step
// implementations it registers (builders/steps), the sandbox type of
// Options.NewSandbox and the SSH environment whose sessions report events.
// The builders proper (importer, customize, kiwi, pack, builderimage) are
// reached through builders/steps only.
var engineBuilders = []string{"builders/steps", "builders/sandbox", "builders/sshenv"}

type goPackage struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []goPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestEngineBuilders pins the step seam: the engine imports builders only
// through engineBuilders, and no builder imports builders/steps, which
// composes them.
func TestEngineBuilders(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			ir, ok := strings.CutPrefix(imp, module)
			if !ok || !strings.HasPrefix(ir, "builders/") {
				continue
			}
			if (rel == "engine" || strings.HasPrefix(rel, "engine/")) && !slices.Contains(engineBuilders, ir) {
				t.Errorf("%s imports %s; the engine reaches builders through builders/steps (allowed: %v)", rel, ir, engineBuilders)
			}
			if ir == "builders/steps" && strings.HasPrefix(rel, "builders/") && rel != "builders/steps" {
				t.Errorf("%s imports builders/steps, which composes the builders: a builder must not depend on it", rel)
			}
		}
	}
}

func TestDependencyDirection(t *testing.T) {
	checked := 0
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module)
		for from, bans := range forbidden {
			if rel != from && !strings.HasPrefix(rel, from+"/") {
				continue
			}
			if rel == "internal/depcheck" || strings.HasPrefix(rel, "internal/testutil") {
				continue
			}
			if from == "ims" && strings.HasPrefix(rel, "ims/server") {
				continue
			}
			checked++
			for _, imp := range p.Imports {
				ir, ok := strings.CutPrefix(imp, module)
				if !ok {
					continue
				}
				for _, ban := range bans {
					if slices.Contains(exceptions[rel], ban) {
						continue
					}
					if ir == ban || strings.HasPrefix(ir, ban+"/") {
						t.Errorf("%s imports %s; DESIGN §2 forbids %s → %s", rel, ir, from, ban)
					}
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages; is go list seeing the module?", checked)
	}
}
