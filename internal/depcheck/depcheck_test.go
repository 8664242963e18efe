// Package depcheck pins the dependency direction of DESIGN §2:
// cmd → engine → {builders, cache, publish} → spec, ims; builders and
// publish do not import cache.
package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
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
}

func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
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
