package s3

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/publish/recipe"
)

// writeRecipeTGZ archives a small recipe directory and returns the path of
// the archive and its sha256 hex.
func writeRecipeTGZ(t *testing.T, configXML string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "recipe")
	if err := os.MkdirAll(filepath.Join(src, "root/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "config.xml"), []byte(configXML), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "root/etc/motd"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(dir, "recipe.tgz")
	f, err := os.Create(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := recipe.Archive(t.Context(), src, f); err != nil {
		t.Fatalf("Archive() error: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, sum := fileSums(t, tgz)
	return tgz, sum[len("sha256:"):]
}

func TestPublishRecipeRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultRecipeBucket)
	tgz, sum := writeRecipeTGZ(t, "<image name=\"node\"/>\n")
	_, md5sum, _ := fileSums(t, tgz)
	var ct countingTransport
	cfg := testConfig(srv)
	cfg.HTTPClient = &http.Client{Transport: &ct}
	p := newPublisher(t, cfg)
	rec := RecipeUpload{Name: "node", Arch: "x86_64", LinuxDistribution: "debian", RequireDKMS: true, RecipeType: "kiwi-ng",
		Template: map[string]string{"release": "bookworm", "arch": "amd64"}, TGZPath: tgz}

	link, err := p.PublishRecipe(ctx, rec)
	if err != nil {
		t.Fatalf("PublishRecipe() error: %v", err)
	}
	id := recipe.RecipeID("node", sum)
	key := "recipes/" + id + "/recipe.tgz"
	o, err := getObject(t, srv.Client(t), DefaultRecipeBucket, key)
	if err != nil {
		t.Fatalf("GetObject(%s) error: %v", key, err)
	}
	if want := (ims.Link{Path: "s3://ims/" + key, Etag: o.etag, Type: "s3"}); link != want {
		t.Errorf("PublishRecipe() = %+v, want %+v", link, want)
	}
	if o.sha256 != sum || o.md5 != md5sum || o.meta[MetaMD5] != md5sum || o.meta[MetaSHA256] != sum {
		t.Errorf("object sha256 %s md5 %s metadata %v, want %s %s", o.sha256, o.md5, o.meta, sum, md5sum)
	}

	// Download, as a recipe fetch would, gives the same bytes.
	a, err := Download(ctx, testConfig(srv), link.Path, filepath.Join(t.TempDir(), "recipe.tgz"), "")
	if err != nil {
		t.Fatalf("Download() error: %v", err)
	}
	if a.SHA256 != "sha256:"+sum || a.MediaType != ims.MediaTypeRecipe {
		t.Errorf("Download() = %+v, want sha256 %s type %s", a, sum, ims.MediaTypeRecipe)
	}

	// Publishing again sends no PUT and keeps the object.
	ct.reset()
	again, err := p.PublishRecipe(ctx, rec)
	if err != nil {
		t.Fatalf("PublishRecipe() again error: %v", err)
	}
	if again != link {
		t.Errorf("PublishRecipe() again = %+v, want %+v", again, link)
	}
	if n, m := ct.count(http.MethodPut), ct.count(http.MethodPost); n+m != 0 {
		t.Errorf("republish sent %d PUT and %d POST requests, want none", n, m)
	}
	if o2, _ := getObject(t, srv.Client(t), DefaultRecipeBucket, key); !o2.modified.Equal(o.modified) {
		t.Errorf("object modified on republish")
	}

	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	want := ims.RecipeRecord{
		ID: id, Created: "2025-01-02T03:04:05Z", Name: "node", RecipeType: "kiwi-ng", LinuxDistribution: "debian",
		Link: &link, Arch: "x86_64", RequireDKMS: true,
		TemplateDictionary: []ims.TemplateEntry{{Key: "arch", Value: "amd64"}, {Key: "release", Value: "bookworm"}},
	}
	if diff := cmp.Diff(want, rec.Record(link, created)); diff != "" {
		t.Errorf("Record() mismatch (-want +got):\n%s", diff)
	}
}

// An explicit id keeps its key: a changed archive replaces the object.
func TestPublishRecipeExplicitIDReplaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "recipes-site")
	cfg := testConfig(srv)
	cfg.RecipeBucket = "recipes-site"
	p := newPublisher(t, cfg)
	const id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	for i, xml := range []string{"<image name=\"a\"/>\n", "<image name=\"b\"/>\n"} {
		tgz, sum := writeRecipeTGZ(t, xml)
		link, err := p.PublishRecipe(ctx, RecipeUpload{Name: "node", TGZPath: tgz, ID: id})
		if err != nil {
			t.Fatalf("PublishRecipe(%d) error: %v", i, err)
		}
		if want := "s3://recipes-site/recipes/" + id + "/recipe.tgz"; link.Path != want {
			t.Errorf("PublishRecipe(%d) path = %s, want %s", i, link.Path, want)
		}
		o, err := getObject(t, srv.Client(t), "recipes-site", RecipeKey(id))
		if err != nil {
			t.Fatal(err)
		}
		if o.sha256 != sum {
			t.Errorf("PublishRecipe(%d): object sha256 %s, want %s", i, o.sha256, sum)
		}
	}
}

func TestPublishRecipeErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	tgz, _ := writeRecipeTGZ(t, "<image/>\n")
	p := newPublisher(t, testConfig(srv)) // no bucket "ims"
	if _, err := p.PublishRecipe(ctx, RecipeUpload{Name: "node", TGZPath: tgz}); !errors.Is(err, ErrNoSuchBucket) {
		t.Errorf("PublishRecipe(no bucket) error = %v, want ErrNoSuchBucket", err)
	}
	if _, err := p.PublishRecipe(ctx, RecipeUpload{TGZPath: tgz}); err == nil {
		t.Error("PublishRecipe(no name, no id) error = nil, want an error")
	}
	if _, err := p.PublishRecipe(ctx, RecipeUpload{Name: "node", TGZPath: filepath.Join(t.TempDir(), "none.tgz")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PublishRecipe(missing file) error = %v, want ErrNotExist", err)
	}
}
