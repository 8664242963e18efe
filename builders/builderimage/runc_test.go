package builderimage_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/builderimage"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestRuncBuilderRoot runs a non-jailed command under runc with the
// unpacked image as the builder environment and another root at
// /mnt/image.
func TestRuncBuilderRoot(t *testing.T) {
	testutil.RequireTool(t, "runc")
	testutil.RequireRoot(t)
	img := busyboxImage(t, "only in the builder image\n")
	dir := writeLayout(t, img, "builder")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	builderRoot, _, err := builderimage.Unpack(ctx, builderimage.LayoutScheme+dir+":builder", t.TempDir(), builderimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.Open(sandbox.BackendRunc)
	if err != nil {
		t.Fatal(err)
	}
	imageRoot := testutil.BusyboxRoot(t, false)
	var stderr bytes.Buffer
	err = sb.Run(ctx, sandbox.Spec{
		Root:        imageRoot,
		BuilderRoot: builderRoot,
		Args: []string{"/bin/sh", "-c",
			"busybox | head -1 > /mnt/image/builder-was-here && cat /etc/added > /mnt/image/from-builder"},
		Env:     []string{"PATH=/usr/bin:/bin"},
		Stderr:  &stderr,
		Timeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("Run() = %v, stderr:\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(imageRoot, "builder-was-here"))
	if err != nil || !strings.HasPrefix(string(b), "BusyBox v") {
		t.Errorf("builder-was-here = %q, %v; want busybox's banner", b, err)
	}
	// /etc/added exists only in the builder image: the command ran in it.
	b, err = os.ReadFile(filepath.Join(imageRoot, "from-builder"))
	if err != nil || string(b) != "only in the builder image\n" {
		t.Errorf("from-builder = %q, %v; want the builder image's /etc/added", b, err)
	}
	// The builder root is a shared cache entry: the run left nothing in it.
	if _, err := os.Lstat(filepath.Join(builderRoot, "mnt/image")); err == nil {
		t.Errorf("the run left mnt/image in the builder root")
	}
}
