package kiwi

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/tail"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// builderRootEnv names an existing builder root for
// TestPrepareInBuilderRoot to use instead of bootstrapping one, to iterate
// quickly.
const builderRootEnv = "IMSBUILD_TEST_KIWI_BUILDER_ROOT"

// TestPrepareInBuilderRoot bootstraps a Debian builder root holding kiwi-ng
// (what builderimage.Unpack gives the engine for a builder image) and runs
// a real prepare of the example recipe with it under runc: about 3 minutes
// for the builder root and 4 for the prepare on 2 cores.
func TestPrepareInBuilderRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng build; skipped with -short")
	}
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "runc")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()

	builder := os.Getenv(builderRootEnv)
	if builder == "" {
		builder = bootstrapBuilder(ctx, t)
	}
	work := t.TempDir()
	desc := filepath.Join(work, "recipe")
	if err := FetchRecipe(ctx, "../../examples/debian-node/recipes/node", desc); err != nil {
		t.Fatal(err)
	}
	if err := Render(desc, map[string]string{"release": "bookworm"}); err != nil {
		t.Fatal(err)
	}
	// Not below /tmp (see PrepareOptions.SharedCacheDir).
	cacheDir, err := os.MkdirTemp("/var/cache", "imsbuild-kiwi-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cacheDir) })

	mounts := readMounts(t)
	root := filepath.Join(work, "image", "root")
	kiwiLog := filepath.Join(work, "kiwi.log")
	start := time.Now()
	err = Prepare(ctx, PrepareOptions{
		Description:    desc,
		Root:           root,
		SharedCacheDir: cacheDir,
		BuilderRoot:    builder,
		Log:            testWriter{t},
		KiwiLog:        kiwiLog,
	})
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	t.Logf("prepare took %s", time.Since(start).Round(time.Second))
	if got := readMounts(t); got != mounts {
		t.Errorf("/proc/mounts changed:\nbefore:\n%s\nafter:\n%s", mounts, got)
	}

	for _, pattern := range []string{"boot/vmlinuz-*", "boot/initrd.img-*"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		if len(m) == 0 {
			t.Errorf("no %s in the prepared root", pattern)
		}
		for _, p := range m {
			if fi, err := os.Stat(p); err != nil || fi.Size() < 1<<20 {
				t.Errorf("%s: %v; want a real file of 1 MiB or more", p, err)
			}
		}
	}
	osRelease, err := os.ReadFile(filepath.Join(root, "etc/os-release"))
	if err != nil || !strings.Contains(string(osRelease), "VERSION_CODENAME=bookworm") {
		t.Errorf("/etc/os-release = %q, %v; want bookworm", osRelease, err)
	}
	// kiwi ran in the container, where the image root is under /mnt/image.
	b, err := os.ReadFile(kiwiLog)
	if err != nil || !strings.Contains(string(b), "/mnt/image/root") {
		t.Errorf("kiwi log (%v) does not name the image root at /mnt/image/root", err)
	}
	// The builder root is a shared cache entry: the run left nothing in it.
	for _, p := range []string{cacheDir, "mnt/desc", "mnt/imsbuild"} {
		if _, err := os.Lstat(filepath.Join(builder, p)); err == nil {
			t.Errorf("the run left %s in the builder root", p)
		}
	}
}

// bootstrapBuilder makes a Debian bookworm builder root with kiwi-ng and
// what it runs for apt recipes.
func bootstrapBuilder(ctx context.Context, t *testing.T) string {
	t.Helper()
	debootstrap := testutil.RequireTool(t, "debootstrap")
	dir := filepath.Join(t.TempDir(), "builder")
	start := time.Now()
	cmd := exec.CommandContext(ctx, debootstrap, "--variant=minbase",
		"--include=kiwi,debootstrap,rsync,squashfs-tools,debian-archive-keyring,ca-certificates,gnupg",
		"bookworm", dir, "http://deb.debian.org/debian")
	out := tail.New(30)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, strings.Join(out.Lines(), "\n"))
	}
	t.Logf("builder root bootstrapped in %s", time.Since(start).Round(time.Second))
	return dir
}
