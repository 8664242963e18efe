package server

import (
	"fmt"
	"sync"
	"testing"
)

// TestPatchDuringSoftDelete: a PATCH answered 200 while a soft delete of
// the same image runs must not be lost: the deleted record has it.
func TestPatchDuringSoftDelete(t *testing.T) {
	e := newEnv(t)
	for i := range 15 {
		img := e.must(201, "POST", "/v3/images", map[string]any{"name": "i", "link": e.putImageArtifacts(fmt.Sprintf("race%d", i))})
		id := img["id"].(string)
		var wg sync.WaitGroup
		var patched int
		wg.Add(2)
		go func() {
			defer wg.Done()
			e.must(204, "DELETE", "/v3/images/"+id, nil)
		}()
		go func() {
			defer wg.Done()
			patched, _ = e.call("PATCH", "/v3/images/"+id, map[string]any{"metadata": map[string]any{"operation": "set", "key": "k", "value": "v"}})
		}()
		wg.Wait()
		d := e.must(200, "GET", "/v3/deleted/images/"+id, nil)
		if patched == 200 && d["metadata"].(map[string]any)["k"] != "v" {
			t.Fatalf("round %d: PATCH answered 200 but the deleted image lacks it: %v", i, d)
		}
		if patched != 200 && patched != 404 {
			t.Fatalf("round %d: PATCH = %d", i, patched)
		}
	}
}
