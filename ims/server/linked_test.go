package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDuplicateLink pins what recipes and images share: a link path
// another record has is a 422 naming that record, on POST and on PATCH,
// and a PATCH that sets a link the record lacks is checked in S3.
func TestDuplicateLink(t *testing.T) {
	e := newEnv(t)
	e.putObject("ims", "recipes/dup/recipe.tgz", []byte("tgz"))
	recipeLink := map[string]any{"path": "s3://ims/recipes/dup/recipe.tgz", "etag": "", "type": "s3"}
	imageLink := e.putImageArtifacts("dup")
	for _, tc := range []struct {
		name, path, noun string
		body             map[string]any
		link             map[string]any
	}{
		{"recipes", "/v3/recipes", "Recipe", map[string]any{"name": "r", "recipe_type": "kiwi-ng", "linux_distribution": "sles15"}, recipeLink},
		{"images", "/v3/images", "Image", map[string]any{"name": "i"}, imageLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withLink := map[string]any{"link": tc.link}
			for k, v := range tc.body {
				withLink[k] = v
			}
			first := e.must(201, "POST", tc.path, withLink)
			want := map[string]any{"link": []any{tc.noun + " record " + first["id"].(string) + " already has the link path " + tc.link["path"].(string) + "."}}

			got := e.must(422, "POST", tc.path, withLink)
			if diff := cmp.Diff(want, got["errors"]); diff != "" {
				t.Errorf("POST duplicate: errors (-want +got):\n%s", diff)
			}
			// A record without a link may take one, but not this one.
			bare := e.must(201, "POST", tc.path, tc.body)
			got = e.must(422, "PATCH", tc.path+"/"+bare["id"].(string), map[string]any{"link": tc.link})
			if diff := cmp.Diff(want, got["errors"]); diff != "" {
				t.Errorf("PATCH duplicate: errors (-want +got):\n%s", diff)
			}
			e.must(422, "PATCH", tc.path+"/"+bare["id"].(string), map[string]any{"link": map[string]any{"path": "s3://ims/missing", "etag": "", "type": "s3"}})
			if got := e.must(200, "GET", tc.path+"/"+bare["id"].(string), nil); got["link"] != nil {
				t.Errorf("link after failed PATCHes = %v, want null", got["link"])
			}
		})
	}
}
