package kiwi

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

func TestPrepareUnsafeIO(t *testing.T) { forEachSandbox(t, testPrepareUnsafeIO) }

// testPrepareUnsafeIO checks that kiwi, and so every dpkg it runs, gets
// DPKG_FORCE with unsafe-io, on the host and in a builder root.
func testPrepareUnsafeIO(t *testing.T, builder bool) {
	marker := fmt.Sprintf("imsbuild-test-unsafeio-%d", time.Now().UnixNano())
	builderRoot := fakeKiwi(t, builder, marker, `echo "$DPKG_FORCE" > "$root/dpkg-force"`)
	root := filepath.Join(t.TempDir(), "root")
	err := Prepare(t.Context(), PrepareOptions{
		Description: t.TempDir(), Root: root, Log: io.Discard, KiwiLog: filepath.Join(t.TempDir(), "kiwi.log"), BuilderRoot: builderRoot,
	})
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	waitGone(t, marker)
	b, err := os.ReadFile(filepath.Join(root, "dpkg-force"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != dpkgForce {
		t.Errorf("kiwi's DPKG_FORCE = %q, want %q", got, dpkgForce)
	}
}

// TestDPKGForceKeepsDefaults installs a package with the real dpkg and
// prepareEnv's DPKG_FORCE: the variable replaces dpkg's built-in force
// defaults (marked [*] by --force-help), so it must name them all, and add
// only unsafe-io. dpkg tells its maintainer scripts the force options in
// effect (DPKG_FORCE); the host's dpkg.cfg.d may add its own (DPKG_FORCE=""
// shows those alone).
func TestDPKGForceKeepsDefaults(t *testing.T) {
	testutil.RequireRoot(t)
	dpkg := testutil.RequireTool(t, "dpkg")
	testutil.RequireTool(t, "dpkg-deb")
	help, err := exec.Command(dpkg, "--force-help").Output()
	if err != nil {
		t.Fatalf("dpkg --force-help: %v", err)
	}
	want := dpkgForceSeen(t, dpkg, "DPKG_FORCE=")
	for line := range strings.Lines(string(help)) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "[*]" {
			want = append(want, f[1])
		}
	}
	want = append(want, "unsafe-io")
	slices.Sort(want)
	want = slices.Compact(want)
	got := dpkgForceSeen(t, dpkg, "DPKG_FORCE="+envValue(prepareEnv("/g", nil), "DPKG_FORCE"))
	if !slices.Equal(got, want) {
		t.Errorf("force options with prepareEnv's DPKG_FORCE = %q, want dpkg's defaults and the host's plus unsafe-io: %q", got, want)
	}
}

// dpkgForceSeen installs a package into a fresh dpkg root with env added to
// dpkg's environment and returns the force options its postinst saw,
// sorted, without script-chrootless (which lets the postinst run on the
// host).
func dpkgForceSeen(t *testing.T, dpkg string, env ...string) []string {
	t.Helper()
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	pkg := filepath.Join(dir, "pkg")
	mustWrite(t, filepath.Join(pkg, "DEBIAN/control"), "Package: imsbuild-unsafeio-test\nVersion: 1\nArchitecture: all\n"+
		"Maintainer: imsbuild <imsbuild@example.com>\nDescription: test\n", 0o644)
	mustWrite(t, filepath.Join(pkg, "DEBIAN/postinst"), "#!/bin/sh\necho \"$DPKG_FORCE\" > "+seen+"\n", 0o755)
	mustWrite(t, filepath.Join(pkg, "usr/share/imsbuild-test/file"), "content\n", 0o644)
	deb := filepath.Join(dir, "test.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", pkg, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, out)
	}
	root := filepath.Join(dir, "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(root, "var/lib/dpkg/status"), "", 0o644)
	cmd := exec.Command(dpkg, "--root="+root, "--force-script-chrootless", "--install", deb)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg --install: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/imsbuild-test/file")); err != nil || string(b) != "content\n" {
		t.Fatalf("installed file = %q, %v", b, err)
	}
	b, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	var opts []string
	for _, o := range strings.Split(strings.TrimSpace(string(b)), ",") {
		if o != "" && o != "script-chrootless" {
			opts = append(opts, o)
		}
	}
	slices.Sort(opts)
	return opts
}
