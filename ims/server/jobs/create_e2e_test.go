package jobs

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// serveEnv is imsbuild serve in-process: the IMS API with a job runner on
// a real S3 (versitygw).
type serveEnv struct {
	// Client calls the API root, …/v3.
	*servertest.Client

	t      *testing.T
	root   string // the server's URL
	st     *store.Store
	blobs  *blob.Store
	runner *Runner
	s3     *s3.Client
	cache  string
}

func newServeEnv(t *testing.T, maxJobs int, caCerts ...string) *serveEnv {
	t.Helper()
	return newServeEnvWith(t, maxJobs, func(cfg *Config, _ *s3test.Server) { cfg.CACerts = caCerts })
}

// newServeEnvWith is newServeEnv with the runner's Config changed by mod,
// which gets the S3 server too.
func newServeEnvWith(t *testing.T, maxJobs int, mod func(*Config, *s3test.Server)) *serveEnv {
	t.Helper()
	s3s := s3test.Start(t)
	s3s.CreateBucket(t, "boot-images")
	s3s.CreateBucket(t, "ims")
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	client := s3s.Client(t)
	blobs := blob.New(client)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cache := filepath.Join(dir, "cache")
	reg := prometheus.NewRegistry()
	ports := servertest.FreePorts(t, 4)
	cfg := Config{Store: st, Blobs: blobs, CacheDir: cache, MaxJobs: maxJobs, SSHHost: "127.0.0.1",
		SSHPortFirst: ports, SSHPortLast: ports + 3, Environ: os.Environ(), Logger: log, Registry: reg}
	mod(&cfg, s3s)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Logger: log, Runner: r, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &serveEnv{Client: &servertest.Client{T: t, Base: ts.URL + "/v3"}, t: t, root: ts.URL, st: st, blobs: blobs, runner: r, s3: client, cache: cache}
}

// metrics returns the server's /metrics.
func (e *serveEnv) metrics() string {
	return string((&servertest.Client{T: e.t, Base: e.root}).Get("/metrics"))
}

// recipeArchive tars examples/debian-node's recipe as an IMS recipe: its
// config.xml listed in .ims_recipe_template.yaml. edit may change the
// config.xml.
func recipeArchive(t *testing.T, edit func(string) string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "node")
	if out, err := exec.Command("cp", "-a", "../../../examples/debian-node/recipes/node", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy recipe: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, templateListFile), []byte("template_files:\n  - config.xml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "config.xml"))
		if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(edit(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("tar", "-C", dir, "-czf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// registerRecipe uploads an archive as IMS's recipe_upload does and
// registers it.
func (e *serveEnv) registerRecipe(name string, archive []byte) string {
	e.t.Helper()
	key := "recipes/" + name + "/recipe.tar.gz"
	sum := md5.Sum(archive)
	if _, err := e.s3.PutObject(e.t.Context(), &s3.PutObjectInput{Bucket: aws.String("ims"), Key: aws.String(key),
		Body: bytes.NewReader(archive), Metadata: map[string]string{"md5sum": hex.EncodeToString(sum[:])}}); err != nil {
		e.t.Fatal(err)
	}
	return e.Call(201, "POST", "/recipes", map[string]any{
		"name": name, "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
		"link":                map[string]any{"path": "s3://ims/" + key, "etag": "", "type": "s3"},
		"template_dictionary": []map[string]string{{"key": "release", "value": "bookworm"}},
	})["id"].(string)
}

// TestCreateJobEndToEnd runs create jobs over HTTP on examples/debian-node's
// recipe with the real kiwi-ng: the first builds and publishes a new image
// record whose id is its S3 prefix; the second is a cache hit in seconds;
// a DELETE during kiwi stops it and leaves nothing behind.
func TestCreateJobEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng build")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "bwrap"} {
		testutil.RequireTool(t, tool)
	}
	ca := servertest.SiteCA(t)
	e := newServeEnv(t, 2, ca)
	rec := e.registerRecipe("debian-node", recipeArchive(t, nil))
	key := e.Call(201, "POST", "/public-keys", map[string]any{"name": "admin", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5Ys3HbWA7VHWRj2n7L3sc0x1Dg9D6FqJkvNrU/rFhm admin"})["id"].(string)
	post := map[string]any{"job_type": "create", "artifact_id": rec, "public_key_id": key, "image_root_archive_name": "debian-node"}

	start := time.Now()
	job := e.Call(201, "POST", "/jobs", post)
	id := job["id"].(string)
	job, seen := e.WaitJob(id, 20*time.Minute, "success", "error")
	log := e.Get("/jobs/" + id + "/log")
	if job["status"] != "success" {
		t.Fatalf("first create job: %v (statuses %v)\nlog:\n%s", job["status"], seen, log)
	}
	t.Logf("first create job: %v, statuses %v", time.Since(start), seen)
	if got, want := logStatuses(log), "fetching_recipe waiting_for_repos building_image packaging_artifacts"; got != want {
		t.Errorf("statuses in the job log: %s, want IMS's %s", got, want)
	}
	imgID := checkImage(t, e, job, id)
	// --ca-cert: the site CA is in the image's trust store.
	if got := catRootfs(t, e, imgID, "usr/local/share/ca-certificates/imsbuild-1.crt"); got != ca {
		t.Errorf("the --ca-cert certificate in the image = %q, want %q", got, ca)
	}
	// … and where IMS's create sidecar copies it.
	if got := catRootfs(t, e, imgID, caFile[1:]); got != ca {
		t.Errorf("%s in the image = %q, want %q", caFile, got, ca)
	}
	if !bytes.Contains(log, []byte("md5")) || !bytes.Contains(log, []byte("checked")) {
		t.Errorf("the job log does not say the recipe's md5 was checked:\n%s", log)
	}

	// The same recipe again: every step from the cache.
	start = time.Now()
	job2 := e.Call(201, "POST", "/jobs", post)
	id2 := job2["id"].(string)
	job2, seen = e.WaitJob(id2, 5*time.Minute, "success", "error")
	warm := time.Since(start)
	log2 := e.Get("/jobs/" + id2 + "/log")
	if job2["status"] != "success" {
		t.Fatalf("second create job: %v\nlog:\n%s", job2["status"], log2)
	}
	t.Logf("second create job (cache hit): POST to success in %v, statuses %v", warm, seen)
	if !bytes.Contains(log2, []byte("image.image cached")) || bytes.Contains(log2, []byte("image.image/prepare started")) || bytes.Contains(log2, []byte("image.image started")) {
		t.Errorf("second job: not a cache hit\n%s", log2)
	}
	// The goal is < 5 s (bench serve-create-warm measures it); the bound
	// here leaves room for a machine busy with other tests, and still
	// fails a job that runs kiwi or packs again (minutes).
	if warm > 15*time.Second {
		t.Errorf("second create job took %v from POST to success, want a few seconds", warm)
	}
	if img2 := checkImage(t, e, job2, id2); img2 == imgID {
		t.Errorf("the second job reused image record %s; IMS makes a new one", imgID)
	}

	metrics := e.metrics()
	for _, want := range []string{`imsbuild_serve_jobs{status="success"} 2`, `imsbuild_serve_job_duration_seconds_count{job_type="create",status="success"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A recipe with one more package: kiwi runs; DELETE stops it.
	rec3 := e.registerRecipe("debian-node-less", recipeArchive(t, func(s string) string {
		return strings.Replace(s, `<package name="iproute2"/>`, `<package name="iproute2"/><package name="less"/>`, 1)
	}))
	mounts, _ := overlay.HostMounts()
	post["artifact_id"] = rec3
	id3 := e.Call(201, "POST", "/jobs", post)["id"].(string)
	e.WaitJob(id3, 5*time.Minute, "building_image", "error", "success")
	// Let kiwi get going: a process runs in the job's scratch directory.
	work := filepath.Join(e.cache, "work")
	deadline := time.Now().Add(2 * time.Minute)
	for len(testutil.ProcessesMatching(t, work)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no kiwi process of the third job after 2m\nlog:\n%s", e.Get("/jobs/"+id3+"/log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if len(testutil.ProcessesMatching(t, work)) == 0 {
		t.Fatalf("the third job's processes ended on their own\nlog:\n%s", e.Get("/jobs/"+id3+"/log"))
	}
	start = time.Now()
	e.Call(204, "DELETE", "/jobs/"+id3, nil)
	t.Logf("DELETE of a running job: %v", time.Since(start))
	e.Call(404, "GET", "/jobs/"+id3, nil)
	if p := testutil.ProcessesMatching(t, work); len(p) > 0 {
		t.Errorf("processes of the deleted job left: %v", p)
	}
	if after, _ := overlay.HostMounts(); after != mounts {
		t.Errorf("mounts changed by the deleted job:\n%s", after)
	}
	if runs, _ := filepath.Glob(filepath.Join(work, "run-*")); len(runs) > 0 {
		t.Errorf("work dirs left: %v", runs)
	}
	if n := len(e.st.Images.All()); n != 2 {
		t.Errorf("%d image records, want the 2 of the finished jobs", n)
	}
}

// catRootfs returns a file of an image's rootfs in S3.
func catRootfs(t *testing.T, e *serveEnv, imgID, name string) string {
	t.Helper()
	body, _, err := e.blobs.Get(t.Context(), "boot-images", imgID+"/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	f := filepath.Join(t.TempDir(), "rootfs")
	out, err := os.Create(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, body); err != nil {
		t.Fatal(err)
	}
	out.Close()
	b, err := exec.Command("unsquashfs", "-cat", f, name).Output()
	if err != nil {
		t.Errorf("unsquashfs -cat %s: %v", name, err)
	}
	return string(b)
}

// logStatuses returns the statuses a job log records, in order.
func logStatuses(log []byte) string {
	var out []string
	for _, line := range strings.Split(string(log), "\n") {
		if _, st, ok := strings.Cut(line, "imsbuild serve: status "); ok {
			out = append(out, st)
		}
	}
	return strings.Join(out, " ")
}

// checkImage checks the image of a successful create job: a record named
// as the job says, linked to s3://boot-images/<id>/manifest.json, a
// manifest as IMS writes it, and each artifact with its md5 and IMS's
// metadata. It returns the image id.
func checkImage(t *testing.T, e *serveEnv, job map[string]any, jobID string) string {
	t.Helper()
	imgID, _ := job["resultant_image_id"].(string)
	if imgID == "" {
		t.Fatalf("job %s has no resultant_image_id: %v", jobID, job)
	}
	img := e.Call(200, "GET", "/images/"+imgID, nil)
	link, _ := img["link"].(map[string]any)
	if img["name"] != "debian-node" || link == nil || link["path"] != "s3://boot-images/"+imgID+"/manifest.json" || link["etag"] == "" {
		t.Fatalf("image record = %v", img)
	}
	ctx := t.Context()
	data, err := e.blobs.Read(ctx, "boot-images", imgID+"/manifest.json", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ims.ParseManifest(data)
	if err != nil {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	if !bytes.HasPrefix(data, []byte("{\n    \"artifacts\": [")) {
		t.Errorf("manifest is not json.dump(sort_keys=True, indent=4):\n%s", data)
	}
	types := map[string]bool{}
	for _, a := range m.Artifacts {
		types[a.Type] = true
		bucket, key, err := blob.ParseURL(a.Link.Path)
		if err != nil || bucket != "boot-images" || !strings.HasPrefix(key, imgID+"/") {
			t.Errorf("artifact %s not under boot-images/%s/", a.Link.Path, imgID)
			continue
		}
		body, info, err := e.blobs.Get(ctx, bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		h := md5.New()
		_, err = io.Copy(h, body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != a.MD5 || info.Metadata["md5sum"] != a.MD5 {
			t.Errorf("%s: md5 %s, metadata %s, manifest %s", key, got, info.Metadata["md5sum"], a.MD5)
		}
		if info.ETag != a.Link.Etag {
			t.Errorf("%s: etag %s, manifest %s", key, info.ETag, a.Link.Etag)
		}
		for k, want := range map[string]string{"x-shasta-ims-image-name": "debian-node", "x-shasta-ims-image-id": imgID, "x-shasta-ims-job-id": jobID} {
			if info.Metadata[k] != want {
				t.Errorf("%s: metadata %s = %q, want %q", key, k, info.Metadata[k], want)
			}
		}
	}
	for _, mt := range []string{ims.MediaTypeRootfs, ims.MediaTypeKernel, ims.MediaTypeInitrd} {
		if !types[mt] {
			t.Errorf("manifest lacks %s:\n%s", mt, data)
		}
	}
	// The engine's SBOM is beside the artifacts (not in the manifest), as
	// every imsbuild publish puts it.
	if types[ims.MediaTypeSPDX] {
		t.Errorf("manifest lists the SBOM:\n%s", data)
	}
	sbomKey := imgID + "/" + ims.SBOMFile
	doc, err := e.blobs.Read(ctx, "boot-images", sbomKey, 64<<20)
	if err != nil {
		t.Fatalf("SBOM: %v", err)
	}
	var spdx struct {
		SPDXVersion string `json:"spdxVersion"`
	}
	if err := json.Unmarshal(doc, &spdx); err != nil || spdx.SPDXVersion != "SPDX-2.3" {
		t.Errorf("%s is not an SPDX 2.3 document (%v):\n%.300s", sbomKey, err, doc)
	}
	info, err := e.blobs.Head(ctx, "boot-images", sbomKey)
	sum := md5.Sum(doc)
	if err != nil || info.Metadata["md5sum"] != hex.EncodeToString(sum[:]) || info.Metadata["x-shasta-ims-image-id"] != imgID {
		t.Errorf("%s: metadata %v, %v; want md5sum %x and the image id", sbomKey, info.Metadata, err, sum)
	}
	return imgID
}
