package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestSoftDeleteMovesArtifacts follows an image and a recipe through v3
// soft delete, undelete and hard delete, and a v2 cascade delete, looking
// at the objects in S3 (SPEC §4).
func TestSoftDeleteMovesArtifacts(t *testing.T) {
	e := newEnv(t)
	link := e.putImageArtifacts("sd")
	img := e.must(201, "POST", "/v3/images", map[string]any{"name": "i", "link": link})
	id := img["id"].(string)
	objects := []string{"sd/rootfs", "sd/kernel", "sd/initrd", "sd/manifest.json"}

	e.must(204, "DELETE", "/v3/images/"+id, nil)
	for _, k := range objects {
		if e.exists("boot-images", k) {
			t.Errorf("%s still there after soft delete", k)
		}
		if !e.exists("boot-images", "deleted/"+k) {
			t.Errorf("deleted/%s missing after soft delete", k)
		}
	}
	d := e.must(200, "GET", "/v3/deleted/images/"+id, nil)
	wantLink := map[string]any{"path": "s3://boot-images/deleted/" + id + "/deleted_manifest.json", "etag": "", "type": "s3"}
	if got, _ := json.Marshal(d["link"]); string(got) != testutil.JSON(t, wantLink) {
		t.Errorf("deleted image link = %s, want %s", got, testutil.JSON(t, wantLink))
	}
	ctx := context.Background()
	dm, err := e.blobs.Read(ctx, "boot-images", "deleted/"+id+"/deleted_manifest.json", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(dm, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 4 || m.Artifacts[3].Type != mediaManifest || m.Artifacts[3].Link.Path != "s3://boot-images/deleted/sd/manifest.json" {
		t.Errorf("deleted manifest = %s", dm)
	}

	e.must(204, "PATCH", "/v3/deleted/images/"+id, map[string]any{"operation": "undelete"})
	for _, k := range objects {
		if !e.exists("boot-images", k) || e.exists("boot-images", "deleted/"+k) {
			t.Errorf("%s not moved back by undelete", k)
		}
	}
	if e.exists("boot-images", "deleted/"+id+"/deleted_manifest.json") {
		t.Error("deleted_manifest.json kept after undelete")
	}
	back := e.must(200, "GET", "/v3/images/"+id, nil)
	if back["link"].(map[string]any)["path"] != link["path"] || back["created"] != img["created"] {
		t.Errorf("undeleted image = %v, want link %v and created %v", back, link["path"], img["created"])
	}

	e.must(204, "DELETE", "/v3/images/"+id, nil)
	e.must(204, "DELETE", "/v3/deleted/images/"+id, nil)
	for _, k := range objects {
		if e.exists("boot-images", k) || e.exists("boot-images", "deleted/"+k) {
			t.Errorf("%s left after hard delete", k)
		}
	}

	// v2: DELETE is hard and cascades by default.
	link2 := e.putImageArtifacts("v2")
	img2 := e.must(201, "POST", "/v2/images", map[string]any{"name": "i2", "link": link2})
	e.must(204, "DELETE", "/images/"+img2["id"].(string), nil)
	for _, k := range []string{"v2/rootfs", "v2/manifest.json"} {
		if e.exists("boot-images", k) {
			t.Errorf("%s left after a v2 cascade delete", k)
		}
	}
	e.must(404, "GET", "/v3/deleted/images/"+img2["id"].(string), nil)

	// Recipes: the tarball moves and the link follows.
	e.putObject("ims", "recipes/r/recipe.tgz", []byte("tgz"))
	rec := e.must(201, "POST", "/v3/recipes", map[string]any{"name": "r", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
		"link": map[string]any{"path": "s3://ims/recipes/r/recipe.tgz", "type": "s3"}})
	rid := rec["id"].(string)
	e.must(204, "DELETE", "/v3/recipes/"+rid, nil)
	if e.exists("ims", "recipes/r/recipe.tgz") || !e.exists("ims", "deleted/recipes/r/recipe.tgz") {
		t.Error("recipe tarball not moved under deleted/")
	}
	dr := e.must(200, "GET", "/v3/deleted/recipes/"+rid, nil)
	if p := dr["link"].(map[string]any)["path"]; p != "s3://ims/deleted/recipes/r/recipe.tgz" {
		t.Errorf("deleted recipe link path = %v", p)
	}
	e.must(204, "PATCH", "/v3/deleted/recipes", map[string]any{"operation": "undelete"})
	if !e.exists("ims", "recipes/r/recipe.tgz") {
		t.Error("recipe tarball not moved back")
	}
	e.must(204, "DELETE", "/recipes/"+rid+"?cascade=true", nil)
	if e.exists("ims", "recipes/r/recipe.tgz") {
		t.Error("recipe tarball left after v2 cascade delete")
	}
}

// TestImageLinkValidation checks IMS's manifest checks and their codes.
func TestImageLinkValidation(t *testing.T) {
	e := newEnv(t)
	good := e.putImageArtifacts("good")
	put := func(key string, m any) map[string]any {
		data, _ := json.Marshal(m)
		e.putObject("boot-images", key, data)
		return map[string]any{"path": "s3://boot-images/" + key, "type": "s3"}
	}
	art := func(path, typ string) map[string]any {
		return map[string]any{"link": map[string]any{"path": path, "type": "s3"}, "type": typ, "md5": ""}
	}
	big := make([]byte, 1<<20)
	e.putObject("boot-images", "big/manifest.json", big)
	tests := []struct {
		name   string
		link   map[string]any
		status int
	}{
		{"missing manifest", map[string]any{"path": "s3://boot-images/none/manifest.json", "type": "s3"}, 422},
		{"too large", map[string]any{"path": "s3://boot-images/big/manifest.json", "type": "s3"}, 400},
		{"version", put("v/manifest.json", map[string]any{"version": "2.0", "artifacts": []any{art("s3://boot-images/good/rootfs", mediaRootfs)}}), 422},
		{"missing artifact", put("a/manifest.json", map[string]any{"version": "1.0", "artifacts": []any{art("s3://boot-images/none/rootfs", mediaRootfs)}}), 422},
		{"no rootfs", put("n/manifest.json", map[string]any{"version": "1.0", "artifacts": []any{art("s3://boot-images/good/kernel", "application/vnd.cray.image.kernel")}}), 400},
		{"two rootfs", put("2/manifest.json", map[string]any{"version": "1.0", "artifacts": []any{art("s3://boot-images/good/rootfs", mediaRootfs), art("s3://boot-images/good/kernel", mediaRootfs)}}), 400},
		{"not s3", map[string]any{"path": "s3://boot-images/good/manifest.json", "type": "http"}, 422},
		{"good", good, 201},
		{"duplicate", good, 422},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			before := e.st.Images.Len()
			e.must(tc.status, "POST", "/v3/images", map[string]any{"name": "x", "link": tc.link})
			if want := before + map[bool]int{true: 1}[tc.status == 201]; e.st.Images.Len() != want {
				t.Errorf("%d images after the POST, want %d", e.st.Images.Len(), want)
			}
		})
	}
}

// TestS3Down: with S3 gone, a link check and a soft delete answer 500 as
// IMS does (the SDK's error is no ClientError) and change no record.
func TestS3Down(t *testing.T) {
	e := newEnv(t)
	link := e.putImageArtifacts("down")
	img := e.must(201, "POST", "/v3/images", map[string]any{"name": "i", "link": link})
	e.putImageArtifacts("down2")
	before, err := readFile(e.dir, store.FileImages)
	if err != nil {
		t.Fatal(err)
	}
	e.s3.Stop()
	e.must(http.StatusInternalServerError, "POST", "/v3/images", map[string]any{"name": "j", "link": map[string]any{"path": "s3://boot-images/down2/manifest.json", "type": "s3"}})
	e.must(http.StatusInternalServerError, "DELETE", "/v3/images/"+img["id"].(string), nil)
	e.must(http.StatusInternalServerError, "DELETE", "/images/"+img["id"].(string), nil)
	after, err := readFile(e.dir, store.FileImages)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("images file changed while S3 was down:\nbefore %s\nafter %s", before, after)
	}
	if e.st.DeletedImages.Len() != 0 || e.st.Images.Len() != 1 {
		t.Errorf("%d images, %d deleted images; want 1, 0", e.st.Images.Len(), e.st.DeletedImages.Len())
	}
	// Records that need no S3 still work.
	e.must(201, "POST", "/v3/images", map[string]any{"name": "no link"})
}

// TestSoftDeleteMovesSBOM: the SBOM and the signed provenance imsbuild
// publishes beside an image's manifest (not listed in it) follow the image
// through soft delete, undelete, hard delete and v2's cascade delete; a
// manifest not named manifest.json has none, so objects of those names
// beside it stay.
func TestSoftDeleteMovesSBOM(t *testing.T) {
	e := newEnv(t)
	doc := []byte(`{"spdxVersion":"SPDX-2.3"}`)
	sides := []string{"sbom.spdx.json", "provenance.intoto.jsonl"}
	put := func(dir string) {
		for _, name := range sides {
			e.putObject("boot-images", dir+"/"+name, doc)
		}
	}
	// where reports which sidecars of dir exist, as "name name".
	where := func(dir string) string {
		var have []string
		for _, name := range sides {
			if e.exists("boot-images", dir+"/"+name) {
				have = append(have, name)
			}
		}
		return strings.Join(have, " ")
	}
	all := strings.Join(sides, " ")
	link := e.putImageArtifacts("sb")
	put("sb")
	id := e.must(201, "POST", "/v3/images", map[string]any{"name": "i", "link": link})["id"].(string)

	e.must(204, "DELETE", "/v3/images/"+id, nil)
	if where("sb") != "" || where("deleted/sb") != all {
		t.Errorf("soft delete: sb has %q, deleted/sb %q; want all moved under deleted/", where("sb"), where("deleted/sb"))
	}
	e.must(204, "PATCH", "/v3/deleted/images/"+id, map[string]any{"operation": "undelete"})
	if where("deleted/sb") != "" || where("sb") != all {
		t.Errorf("undelete: sb has %q, deleted/sb %q; want all back", where("sb"), where("deleted/sb"))
	}
	for _, name := range sides {
		if got, err := e.blobs.Read(t.Context(), "boot-images", "sb/"+name, 1<<20); err != nil || string(got) != string(doc) {
			t.Errorf("sb/%s after undelete = %q, %v; want %q", name, got, err, doc)
		}
	}
	e.must(204, "DELETE", "/v3/images/"+id, nil)
	e.must(204, "DELETE", "/v3/deleted/images/"+id, nil)
	if where("sb") != "" || where("deleted/sb") != "" {
		t.Error("hard delete of a deleted image left its SBOM or provenance")
	}

	link2 := e.putImageArtifacts("sb2")
	put("sb2")
	id2 := e.must(201, "POST", "/v2/images", map[string]any{"name": "i2", "link": link2})["id"].(string)
	e.must(204, "DELETE", "/images/"+id2, nil)
	if where("sb2") != "" || e.exists("boot-images", "sb2/manifest.json") {
		t.Error("v2 cascade delete left the SBOM, the provenance or the manifest")
	}

	// Another tool's manifest, named otherwise: the objects beside it that
	// happen to have those names are not the image's.
	link3 := e.putImageArtifacts("other")
	data, err := e.blobs.Read(t.Context(), "boot-images", "other/manifest.json", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	e.putObject("boot-images", "other/img-manifest.json", data)
	put("other")
	link3["path"] = "s3://boot-images/other/img-manifest.json"
	id3 := e.must(201, "POST", "/v3/images", map[string]any{"name": "i3", "link": link3})["id"].(string)
	e.must(204, "DELETE", "/v3/images/"+id3, nil)
	e.must(204, "DELETE", "/v3/deleted/images/"+id3, nil)
	if where("other") != all || e.exists("boot-images", "other/img-manifest.json") {
		t.Error("deleting an image whose manifest is not manifest.json removed the objects beside it, or not its manifest")
	}
}
