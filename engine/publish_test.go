package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/spec"
)

// TestPublishS3AndOCI builds the fixture and publishes it to a real S3
// server and a real registry from the same build, then reads both back.
func TestPublishS3AndOCI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts S3 and registry servers")
	}
	f := newFixture(t)
	srv := s3test.Start(t)
	srv.CreateBucket(t, "boot-images")
	srv.CreateBucket(t, "ims")
	recipeDir := t.TempDir()
	os.WriteFile(filepath.Join(recipeDir, "config.xml"), []byte("<image name=\"node\"/>\n"), 0o644)
	f.cfg.Recipes = map[string]*spec.Recipe{"node": {Name: "node", Source: recipeDir, Type: "kiwi-ng", Arch: "x86_64", LinuxDistribution: "sles15", RequireDKMS: true}}
	reg := registrytest.Start(t)
	var records []ims.ImageRecord
	var recipes []ims.RecipeRecord
	imsSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret-token" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v3/images":
			json.NewEncoder(w).Encode(records)
		case r.Method == http.MethodGet && r.URL.Path == "/v3/recipes":
			json.NewEncoder(w).Encode(recipes)
		case r.Method == http.MethodPost && r.URL.Path == "/v3/recipes":
			var rec ims.RecipeRecord
			if err := json.NewDecoder(r.Body).Decode(&rec); err != nil || rec.Name == "" || rec.Link == nil || rec.RecipeType != "kiwi-ng" {
				http.Error(w, "bad recipe", http.StatusBadRequest)
				return
			}
			recipes = append(recipes, rec)
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(rec)
		case r.Method == http.MethodPost && r.URL.Path == "/v3/images":
			// As IMS's job helper does: a record first, the link later.
			var rec ims.ImageRecord
			if err := json.NewDecoder(r.Body).Decode(&rec); err != nil || rec.Name == "" || rec.Link != nil {
				http.Error(w, "bad record", http.StatusBadRequest)
				return
			}
			rec.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", len(records))
			records = append(records, rec)
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(rec)
		case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/v3/images/"):
			var patch struct{ Link *ims.Link }
			id := strings.TrimPrefix(r.URL.Path, "/v3/images/")
			if err := json.NewDecoder(r.Body).Decode(&patch); err != nil || patch.Link == nil || patch.Link.Type != "s3" {
				http.Error(w, "bad patch", http.StatusBadRequest)
				return
			}
			for i := range records {
				if records[i].ID == id {
					records[i].Link = patch.Link
					json.NewEncoder(w).Encode(records[i])
					return
				}
			}
			http.NotFound(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(imsSrv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	f.cfg.Publishes = append(f.cfg.Publishes,
		&spec.Publish{Kind: "s3", Name: "site", Images: []string{"base", "compute"},
			Endpoint: srv.Endpoint, Region: srv.Region, Bucket: "boot-images", PathStyle: true, Recipes: []string{"node"}},
		&spec.Publish{Kind: "oci", Name: "registry", Images: []string{"base", "compute"}, Tags: []string{"v1"},
			ImageRepos: map[string]string{"base": reg.Ref("hpc/base"), "compute": reg.Ref("hpc/compute")}},
		&spec.Publish{Kind: "ims", Name: "csm", Images: []string{"compute"}, Recipes: []string{"node"}, Endpoint: imsSrv.URL, Token: "secret-token"},
	)
	got, err := f.build(t, t.Context(), Options{Jobs: 2})
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	for _, id := range []string{"publish.s3.site", "publish.oci.registry", "publish.ims.csm"} {
		if got[id] != StatusDone {
			t.Fatalf("%s = %s, want done (all: %v)", id, got[id], got)
		}
	}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Plan(t.Context(), nil, false); err != nil { // fills results from the cache
		t.Fatal(err)
	}
	img, err := e.publishImage(t.Context(), "image.compute")
	if err != nil {
		t.Fatal(err)
	}
	client := srv.Client(t)
	obj, err := client.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(img.ID + "/manifest.json")})
	if err != nil {
		t.Fatalf("get manifest of %s: %v", img.ID, err)
	}
	data, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	m, err := ims.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Artifacts[0].MD5 != img.Outputs["rootfs"].MD5 || !strings.HasSuffix(m.Artifacts[0].Link.Path, img.ID+"/rootfs") {
		t.Fatalf("S3 manifest rootfs = %+v, want md5 %s", m.Artifacts[0], img.Outputs["rootfs"].MD5)
	}
	if len(records) != 1 || records[0].Name != "compute" || records[0].Link == nil ||
		records[0].Link.Path != "s3://boot-images/"+records[0].ID+"/manifest.json" || records[0].Link.Etag == "" {
		t.Fatalf("IMS records = %+v, want compute linked to the S3 manifest under its record id", records)
	}
	if _, err := client.HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(records[0].ID + "/rootfs")}); err != nil {
		t.Fatalf("rootfs not under the IMS record id %s: %v", records[0].ID, err)
	}
	if len(recipes) != 1 || !strings.HasPrefix(recipes[0].Link.Path, "s3://ims/recipes/") || !strings.HasSuffix(recipes[0].Link.Path, "/recipe.tgz") {
		t.Fatalf("IMS recipes = %+v, want node linked to s3://ims/recipes/<id>/recipe.tgz", recipes)
	}
	if !recipes[0].RequireDKMS || recipes[0].LinuxDistribution != "sles15" {
		t.Errorf("IMS recipe require_dkms = %t, linux_distribution = %q; want the recipe's true and sles15", recipes[0].RequireDKMS, recipes[0].LinuxDistribution)
	}
	if _, err := client.HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: aws.String("ims"), Key: aws.String(strings.TrimPrefix(recipes[0].Link.Path, "s3://ims/"))}); err != nil {
		t.Fatalf("recipe.tgz not in the ims bucket: %v", err)
	}
	if _, err := f.build(t, t.Context(), Options{}); err != nil || len(records) != 1 || len(recipes) != 1 {
		t.Fatalf("republish: %v, %d records; want no duplicate", err, len(records))
	}
	crane := testutil.RequireTool(t, "crane")
	out, err := exec.CommandContext(t.Context(), crane, "manifest", "--insecure", reg.Ref("hpc/compute")+":v1").Output()
	if err != nil {
		t.Fatalf("crane manifest: %v", err)
	}
	if !strings.Contains(string(out), string(img.Outputs["rootfs"].Digest)) || !strings.Contains(string(out), "application/vnd.imsbuild.image.v1") {
		t.Fatalf("OCI manifest lacks the rootfs digest %s:\n%s", img.Outputs["rootfs"].Digest, out)
	}

	// The reverse: an image imported from the registry is the published one.
	f.cfg.Images["restored"] = &spec.Image{Label: "restored", Name: "restored", Arch: "x86_64",
		Import: "oci://" + reg.Ref("hpc/compute") + ":v1", Squashfs: f.cfg.Images["base"].Squashfs}
	f.cfg.Images["restored3"] = &spec.Image{Label: "restored3", Name: "restored3", Arch: "x86_64",
		Import:   "s3://boot-images/" + img.ID + "/manifest.json?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region,
		Squashfs: f.cfg.Images["base"].Squashfs}
	e, err = New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.restored", "image.restored3", "image.compute"}); err != nil {
		t.Fatalf("Build(image.restored*) = %v", err)
	}
	published := e.result("image.compute").Outputs
	for _, id := range []string{"image.restored", "image.restored3"} {
		restored := e.result(id).Outputs
		for _, name := range []string{"rootfs", "kernel", "initrd"} {
			if restored[name].Digest != published[name].Digest || restored[name].MD5 != published[name].MD5 {
				t.Errorf("%s %s = %s, want the published %s", id, name, restored[name].Digest, published[name].Digest)
			}
		}
		// Reused as published, yet with an SBOM like every image's
		// (TestImportAsPublishedSBOM checks its content).
		if o, ok := restored[ims.SBOMFile]; !ok || o.MediaType != ims.MediaTypeSPDX || o.Size == 0 {
			t.Errorf("%s %s = %+v (present %t), want an SPDX document", id, ims.SBOMFile, o, ok)
		}
	}
}

// PublishBlobs finds the local file of a blob through cache/local and
// through cache/tiered (--cache-from/--cache-to), so an OCI push keeps its
// zero-copy path (publish/oci's TestPublishZeroCopy checks the push side);
// a corrupt blob reads as publish.ErrCorrupt and cache.ErrCorrupt both.
func TestPublishBlobs(t *testing.T) {
	lc, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("rootfs bytes")
	d, _, err := lc.Put(t.Context(), bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	missing := digest.Digest("sha256:" + strings.Repeat("0", 64))
	for _, tc := range []struct {
		name  string
		store cache.Store
	}{
		{"local", lc},
		{"tiered", tiered.New(lc, nil, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := PublishBlobs(tc.store)
			p, ok := b.Path(t.Context(), digest.Digest(d))
			if !ok {
				t.Fatalf("Path(%s) = false, want the local blob file", d)
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				t.Errorf("Path(%s) = %s holding %q, %v; want %q", d, p, got, err, data)
			}
			if p, ok := b.Path(t.Context(), missing); ok {
				t.Errorf("Path(missing) = %s, true; want false", p)
			}
			if _, err := b.Stat(t.Context(), missing); !errors.Is(err, publish.ErrNotFound) || !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Stat(missing) = %v, want publish.ErrNotFound and cache.ErrNotFound", err)
			}
		})
	}
	// Corrupt the blob in place: reading it to the end says so.
	p := lc.BlobPath(d)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("tampered by."), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := PublishBlobs(lc).Open(t.Context(), digest.Digest(d))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, publish.ErrCorrupt) || !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("reading a corrupt blob = %v, want publish.ErrCorrupt and cache.ErrCorrupt", err)
	}
}
