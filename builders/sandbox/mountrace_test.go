package sandbox_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestBwrapStartsAgainAfterMountRace: a non-jailed sandbox binds the host
// root with its submounts, and bwrap then remounts each read-only; another
// step's overlay unmounted in between fails bwrap before the command runs
// ("Can't bind mount /oldroot/ on /newroot/: Unable to apply mount flags:
// remount …: No such file or directory"; seen in a -j 4 build of 1,000
// customize steps). Such a start is tried again. The race is the kernel's
// and rare, so a wrapper plays it: it fails the first start as bwrap did,
// then runs the real bwrap. A failure of any other kind is not retried.
func TestBwrapStartsAgainAfterMountRace(t *testing.T) {
	testutil.RequireRoot(t)
	bwrap := testutil.RequireTool(t, "bwrap")
	root := testutil.BusyboxRoot(t, false)
	for _, tc := range []struct {
		name, msg string
		wantRuns  string
		wantErr   bool
	}{
		{name: "remount", msg: `bwrap: Can't bind mount /oldroot/ on /newroot/: Unable to apply mount flags: remount "/newroot/var/cache/imsbuild/work/image.c805/overlay": No such file or directory`, wantRuns: "ok\n"},
		{name: "mount table", msg: `bwrap: Can't bind mount /oldroot/ on /newroot/: Unable to find "/newroot/var/cache/imsbuild/work/image.c805/overlay" in mount table`, wantRuns: "ok\n"},
		{name: "other", msg: `bwrap: Can't find source path /nonexistent: No such file or directory`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			wrapper := filepath.Join(dir, "bwrap")
			script := "#!/bin/sh\nif [ ! -e " + dir + "/failed ]; then\n\ttouch " + dir + "/failed\n\techo '" +
				strings.ReplaceAll(tc.msg, "'", `'\''`) + "' >&2\n\texit 1\nfi\nexec " + bwrap + " \"$@\"\n"
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			got, stderr, err := shell(t, sandbox.NewBwrap(wrapper), sandbox.Spec{Root: root}, "echo ok")
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "Can't find source path") {
					t.Fatalf("Run() = %v, want bwrap's error (stdout %q)", err, got)
				}
				return
			}
			if err != nil || got != tc.wantRuns {
				t.Fatalf("Run() = %v, stdout %q, want %q (stderr %q)", err, got, tc.wantRuns, stderr)
			}
			if !strings.Contains(stderr, "starting it again") {
				t.Errorf("stderr %q does not say the sandbox started again", stderr)
			}
		})
	}
}
