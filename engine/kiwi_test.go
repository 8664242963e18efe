package engine

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/publish/recipe"
	"github.com/imsbuild/imsbuild/spec"
)

func kiwiFixture(t *testing.T, repoURL string) *fixture {
	t.Helper()
	f := newFixture(t)
	recipe := filepath.Join(t.TempDir(), "node")
	if err := os.MkdirAll(recipe, 0o755); err != nil {
		t.Fatal(err)
	}
	xml := `<image schemaversion="7.5" name="node"><preferences><version>1.0.0</version></preferences>` +
		`<repository type="apt-deb" distribution="{{ release }}"><source path="` + repoURL + `"/></repository></image>` + "\n"
	if err := os.WriteFile(filepath.Join(recipe, "config.xml"), []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	f.cfg.Repositories = map[string]*spec.Repository{"debian": {Name: "debian", Type: "apt", URL: repoURL, Distribution: "bookworm", WaitTimeout: 10 * time.Second}}
	f.cfg.Recipes = map[string]*spec.Recipe{"node": {Name: "node", Source: recipe, Type: "kiwi-ng", Arch: "x86_64",
		Template: map[string]string{"release": "bookworm"}, Repositories: []string{"debian"}}}
	base := f.cfg.Images["base"]
	base.Import, base.Recipe = "", "node"
	return f
}

// repoServer serves an apt repository's InRelease whose content can change.
func repoServer(t *testing.T) (*httptest.Server, *atomic.Value) {
	t.Helper()
	var release atomic.Value
	release.Store("Suite: bookworm\nDate: 1\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debian/dists/bookworm/InRelease" {
			fmt.Fprint(w, release.Load().(string))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &release
}

func TestKiwiSubStepsAndCaching(t *testing.T) {
	runs := testutil.FakeKiwi(t)
	srv, release := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")

	got, err := f.build(t, t.Context(), Options{})
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if got["image.base/prepare"] != StatusDone || got["image.base"] != StatusDone || runs() != 1 {
		t.Fatalf("first build = %v with %d kiwi runs, want prepare and base done, 1 run", got, runs())
	}
	e, _ := New(f.cfg, f.cache, f.cache.Actions(), Options{})
	if _, err := e.Plan(t.Context(), nil, false); err != nil {
		t.Fatal(err)
	}
	if xml := unsquash(t, f, e, "image.base")["etc/recipe.xml"]; !strings.Contains(xml, `distribution="bookworm"`) {
		t.Fatalf("template not rendered into the recipe: %q", xml)
	}

	got, _ = f.build(t, t.Context(), Options{})
	if got["image.base/prepare"] != StatusCached || got["image.base"] != StatusCached || runs() != 1 {
		t.Fatalf("second build = %v with %d kiwi runs, want everything cached", got, runs())
	}

	// A squashfs option repacks without reinstalling packages.
	f.cfg.Images["base"].Squashfs.Level = 5
	got, _ = f.build(t, t.Context(), Options{})
	if got["image.base/prepare"] != StatusCached || got["image.base"] != StatusDone || runs() != 1 {
		t.Fatalf("after a level change = %v with %d kiwi runs, want only the pack", got, runs())
	}

	// Only a customize script of the child: no kiwi, base cached.
	f.cfg.Images["compute"].Customize[0].Inline = "echo other > /etc/role\n"
	got, _ = f.build(t, t.Context(), Options{})
	if got["image.base"] != StatusCached || got["image.compute"] != StatusDone || runs() != 1 {
		t.Fatalf("after a script change = %v with %d kiwi runs", got, runs())
	}

	// Repositories join the key only when tracked.
	release.Store("Suite: bookworm\nDate: 2\n")
	if got, _ = f.build(t, t.Context(), Options{}); got["image.base/prepare"] != StatusCached {
		t.Fatalf("untracked repository change rebuilt prepare: %v", got)
	}
	if _, err := f.build(t, t.Context(), Options{TrackRepos: true}); err != nil {
		t.Fatal(err)
	}
	before := runs()
	release.Store("Suite: bookworm\nDate: 3\n")
	e, _ = New(f.cfg, f.cache, f.cache.Actions(), Options{TrackRepos: true})
	plan, err := e.Plan(t.Context(), []string{"image.base"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if reasons := strings.Join(plan[0].Reasons, "\n"); plan[0].Action != ActionBuild || !strings.Contains(reasons, "repository debian metadata changed") {
		t.Fatalf("plan --explain after a repository change = %s %q", plan[0].Action, reasons)
	}
	if _, err := f.build(t, t.Context(), Options{TrackRepos: true}); err != nil || runs() != before+1 {
		t.Fatalf("tracked repository change: err %v, kiwi runs %d, want %d", err, runs(), before+1)
	}
}

// TestKiwiPrepareDuration: the prepare sub-step's done event carries the time
// kiwi took, not 0s (issue 11).
func TestKiwiPrepareDuration(t *testing.T) {
	testutil.FakeKiwi(t)
	inner, err := exec.LookPath("kiwi-ng")
	if err != nil {
		t.Fatal(err)
	}
	slow := t.TempDir()
	script := "#!/bin/sh\n[ \"$1\" = --version ] || sleep 1\nexec " + inner + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(slow, "kiwi-ng"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", slow+":"+os.Getenv("PATH"))
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	rec := &recorder{}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Events: rec.add, WorkDir: filepath.Join(f.cache.Dir(), "work", "t")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	for _, ev := range rec.events {
		if ev.Step == "image.base/prepare" && ev.Status == StatusDone {
			if ev.DurationMS < 1000 {
				t.Fatalf("prepare done after %dms, want at least the 1s kiwi slept", ev.DurationMS)
			}
			return
		}
	}
	t.Fatalf("no done event for image.base/prepare in %v", rec.events)
}

func TestKiwiFailureAndRepoWait(t *testing.T) {
	runs := testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	xml := filepath.Join(f.cfg.Recipes["node"].Source, "config.xml")
	b, _ := os.ReadFile(xml)
	os.WriteFile(xml, []byte(strings.Replace(string(b), "<preferences>", "<!-- FAIL --><preferences>", 1)), 0o644)
	_, err := f.build(t, t.Context(), Options{}, "image.base")
	var se *StepError
	if !asStepError(err, &se) || se.Step != "image.base/prepare" || !strings.Contains(se.LogTail, "broken-pkg not found") {
		t.Fatalf("Build() = %v, want the prepare step's failure with kiwi's message", err)
	}
	if runs() != 1 {
		t.Fatalf("kiwi runs = %d", runs())
	}
	// A repository that never answers fails after its wait_timeout, naming it.
	f.cfg.Repositories["debian"].URL = srv.URL + "/missing"
	f.cfg.Repositories["debian"].WaitTimeout = 2 * time.Second
	os.WriteFile(xml, b, 0o644)
	_, err = f.build(t, t.Context(), Options{}, "image.base")
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/missing") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Build() = %v, want a repository wait error naming the URL and status", err)
	}
}

// TestKiwiDebugOnFailure: a failed kiwi prepare opens the debug environment
// non-jailed on the build root (IMS enable_debug); the step still fails.
func TestKiwiDebugOnFailure(t *testing.T) {
	testutil.RequireTool(t, "ssh")
	testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	xml := filepath.Join(f.cfg.Recipes["node"].Source, "config.xml")
	b, _ := os.ReadFile(xml)
	os.WriteFile(xml, []byte(strings.Replace(string(b), "<preferences>", "<!-- FAIL --><preferences>", 1)), 0o644)
	key, pub := testutil.SSHKey(t)
	r := &sshRunner{t: t, key: key, ran: make(chan struct{}), command: "cat /mnt/image/etc/half && touch /mnt/image/complete"}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir(), DebugOnFailure: true,
		PublicKeys: []string{pub}, SSHTimeout: time.Minute, Events: r.event})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Build(t.Context(), []string{"image.base"})
	var se *StepError
	if !asStepError(err, &se) || se.Step != "image.base/prepare" {
		t.Fatalf("Build() = %v, want the prepare failure after the debug session", err)
	}
	<-r.ran
	if r.err != nil || !strings.Contains(r.out, "half-installed") {
		t.Fatalf("debug ssh = %v, output %q", r.err, r.out)
	}
	if r.info.Jail || r.info.CompleteFile != "/mnt/image/complete" || !r.info.Debug {
		t.Fatalf("debug environment = %+v, want non-jailed with /mnt/image/complete", r.info)
	}
}

// TestKiwiRecipeFromS3: a recipe source s3://ims/recipes/<id>/recipe.tgz
// (the IMS recipe format) is downloaded and built.
func TestKiwiRecipeFromS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an S3 server")
	}
	testutil.FakeKiwi(t)
	repo, _ := repoServer(t)
	f := kiwiFixture(t, repo.URL+"/debian")
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ims")
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	var tgz bytes.Buffer
	if err := recipe.Archive(t.Context(), f.cfg.Recipes["node"].Source, &tgz); err != nil {
		t.Fatal(err)
	}
	key := "recipes/0000/recipe.tgz"
	if _, err := srv.Client(t).PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("ims"), Key: aws.String(key), Body: bytes.NewReader(tgz.Bytes())}); err != nil {
		t.Fatal(err)
	}
	f.cfg.Recipes["node"].Source = "s3://ims/" + key + "?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if xml := unsquash(t, f, e, "image.base")["etc/recipe.xml"]; !strings.Contains(xml, `distribution="bookworm"`) {
		t.Fatalf("recipe from S3 not built: %q", xml)
	}
}

// TestKiwiInBuilderImage: a recipe with builder_image runs the kiwi-ng of
// that OCI image (here a busybox image whose kiwi-ng copies its own root),
// keyed by the image digest instead of the host kiwi version.
func TestKiwiInBuilderImage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	testutil.RequireTool(t, "runc")
	repo, _ := repoServer(t)
	f := kiwiFixture(t, repo.URL+"/debian")
	builder := testutil.BusyboxRoot(t, true)
	fake := `#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in --root) root=$2; shift;; --description) desc=$2; shift;; esac
  shift
done
mkdir -p "$root" && for d in bin etc boot root; do cp -a /$d "$root/"; done
cp "$desc/config.xml" "$root/etc/recipe.xml" && echo "from the builder image" > "$root/etc/built-in"
`
	if err := os.MkdirAll(filepath.Join(builder, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(builder, "usr/bin/kiwi-ng"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t)
	ref := reg.Ref("builders/kiwi:1")
	pushDirImage(t, builder, ref)
	f.cfg.Recipes["node"].BuilderImage = ref
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir(), StateDir: t.TempDir(), KiwiCacheDir: "/var/cache/imsbuild/test-kiwi"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	files := unsquash(t, f, e, "image.base")
	if files["etc/built-in"] != "from the builder image\n" || !strings.Contains(files["etc/recipe.xml"], "bookworm") {
		t.Fatalf("image not prepared by the builder image's kiwi-ng: %q", files["etc/built-in"])
	}
	plan, err := e.Plan(t.Context(), []string{"image.base"}, false)
	if err != nil || plan[0].Action != ActionCached {
		t.Fatalf("Plan() = %v, %v; want cached", plan, err)
	}
}

// The image step packs the root kiwi just made instead of unpacking the
// stored copy; an image of the same recipe that finds the prepare cached
// unpacks the stored root. Both give the same rootfs bytes.
func TestKiwiHandedOverRootMatchesStoredRoot(t *testing.T) {
	runs := testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	twin := *f.cfg.Images["base"]
	twin.Label, twin.Name = "twin", "twin"
	f.cfg.Images["twin"] = &twin

	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Jobs: 1, WorkDir: filepath.Join(f.cache.Dir(), "work", "test")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.base", "image.twin"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if runs() != 1 {
		t.Fatalf("kiwi ran %d times, want once for both images", runs())
	}
	var handed, unpacked int
	for _, id := range []string{"base", "twin"} {
		b, err := os.ReadFile(filepath.Join(e.opts.LogDir, "image."+id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "using the root kiwi just prepared") {
			handed++
		}
		if strings.Contains(string(b), "unpacking the prepared root") {
			unpacked++
		}
	}
	if handed != 1 || unpacked != 1 {
		t.Fatalf("%d images packed the handed-over root and %d the stored one, want 1 and 1", handed, unpacked)
	}
	if a, b := e.result("image.base").Outputs["rootfs"], e.result("image.twin").Outputs["rootfs"]; a.Digest != b.Digest {
		t.Errorf("rootfs of the handed-over root %s != of the stored root %s", a.Digest, b.Digest)
	}
	if left, _ := filepath.Glob(filepath.Join(f.cache.Dir(), "work", "test", "prepared-*")); len(left) > 0 {
		t.Errorf("handed-over roots left behind: %v", left)
	}
}

// kiwi prepares fetch packages through the build's package cache: a second
// recipe's build gets the package the first one downloaded from the cache.
func TestKiwiPackageCache(t *testing.T) {
	wget := testutil.RequireTool(t, "wget")
	bin := t.TempDir()
	// A fake kiwi that downloads the package named in the recipe, as
	// debootstrap and apt do, through $http_proxy.
	script := `#!/bin/sh
if [ "$1" = "--version" ]; then echo "KIWI (next generation) version 9.99.0"; exit 0; fi
while [ $# -gt 0 ]; do
  case "$1" in --root) root=$2; shift;; --description) desc=$2; shift;; esac
  shift
done
url=$(sed -n 's/.*fetch="\([^"]*\)".*/\1/p' "$desc/config.xml")
` + wget + ` -q -O /dev/null "$url" || exit 1
mkdir -p "$root" && cp -a ` + testutil.BusyboxRoot(t, true) + `/. "$root/"
`
	if err := os.WriteFile(filepath.Join(bin, "kiwi-ng"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/debian/dists/bookworm/InRelease":
			fmt.Fprint(w, "Suite: bookworm\n")
		case "/debian/pool/main/l/less/less_590-2_amd64.deb":
			fetched.Add(1)
			w.Write(bytes.Repeat([]byte("deb"), 1000))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	f := kiwiFixture(t, srv.URL+"/debian")
	xml := filepath.Join(f.cfg.Recipes["node"].Source, "config.xml")
	b, _ := os.ReadFile(xml)
	withFetch := strings.Replace(string(b), "<preferences>", `<preferences fetch="`+srv.URL+`/debian/pool/main/l/less/less_590-2_amd64.deb">`, 1)

	for i, recipe := range []string{withFetch, strings.Replace(withFetch, "1.0.0", "1.0.1", 1)} {
		if err := os.WriteFile(xml, []byte(recipe), 0o644); err != nil {
			t.Fatal(err)
		}
		opts := Options{Jobs: 1, WorkDir: filepath.Join(f.cache.Dir(), "work", "test"), PackageStore: f.cache, PackageActions: f.cache.Actions()}
		e, err := New(f.cfg, f.cache, f.cache.Actions(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
		if fetched.Load() != 1 {
			t.Fatalf("after build %d the mirror served the package %d times, want once", i+1, fetched.Load())
		}
		log, _ := os.ReadFile(filepath.Join(e.opts.LogDir, "image.base.prepare.log"))
		want := []string{"0 packages from the cache (0 B), 1 downloaded", "1 packages from the cache (2.9 KiB), 0 downloaded"}[i]
		if !strings.Contains(string(log), want) {
			t.Errorf("build %d prepare log lacks %q:\n%s", i+1, want, log)
		}
	}
}
