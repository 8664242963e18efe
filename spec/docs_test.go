package spec

import (
	"slices"
	"testing"
)

// TestBlockDocsMatchSchemas fails when an argument is added to a schema
// without a doc entry, or a doc entry names no argument of its schema.
func TestBlockDocsMatchSchemas(t *testing.T) {
	schemas := blockSchemas()
	for id := range attrDocs {
		if schemas[id] == nil {
			t.Errorf("attrDocs[%q] documents a block that has no schema", id)
		}
	}
	for id, schema := range schemas {
		if blockHeaders[id] == "" {
			t.Errorf("block %s has no header in blockHeaders", id)
		}
		var names []string
		for _, a := range schema.Attributes {
			names = append(names, a.Name)
		}
		seen := map[string]bool{}
		for _, d := range attrDocs[id] {
			if seen[d.Name] {
				t.Errorf("%s: %s documented twice", id, d.Name)
			}
			seen[d.Name] = true
			if !slices.Contains(names, d.Name) {
				t.Errorf("%s: doc entry %q names no argument of the schema %v", id, d.Name, names)
			}
			if d.Description == "" || d.Type == "" {
				t.Errorf("%s.%s: needs a type and a description", id, d.Name)
			}
		}
		for _, n := range names {
			if !seen[n] {
				t.Errorf("%s: argument %q has no doc entry in attrDocs (spec/docs.go)", id, n)
			}
		}
	}
}

// TestBlockDocsCoverNestedBlocks fails when a block type is added to a
// schema without a documented schema of its own.
func TestBlockDocsCoverNestedBlocks(t *testing.T) {
	schemas := blockSchemas()
	for _, b := range topSchema.Blocks {
		switch b.Type {
		case "locals": // free-form attributes: documented in prose
			continue
		case "publish":
			for kind := range publishAttrs {
				if schemas["publish."+kind] == nil {
					t.Errorf("publish kind %s has no schema entry", kind)
				}
			}
			continue
		}
		if schemas[b.Type] == nil {
			t.Errorf("top-level block %s is not in blockSchemas", b.Type)
		}
	}
	for id, schema := range schemas {
		for _, b := range schema.Blocks {
			if schemas[id+"."+b.Type] == nil {
				t.Errorf("block %s.%s is not in blockSchemas", id, b.Type)
			}
		}
	}
}

func TestBlockDocsRequiredFromSchema(t *testing.T) {
	for _, b := range BlockDocs() {
		for _, a := range b.Attrs {
			want := false
			for _, s := range blockSchemas()[b.ID].Attributes {
				if s.Name == a.Name {
					want = s.Required
				}
			}
			if a.Required != want {
				t.Errorf("BlockDocs() %s.%s Required = %v, want %v", b.ID, a.Name, a.Required, want)
			}
		}
	}
	if got := BlockDocs(); len(got) != len(blockSchemas()) {
		t.Errorf("BlockDocs() has %d blocks, want %d", len(got), len(blockSchemas()))
	}
}
