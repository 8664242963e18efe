package caps

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestCanMount: root with CAP_SYS_ADMIN may mount; the same root with the
// capability dropped (capsh, in a child: as in an unprivileged pod) may not.
func TestCanMount(t *testing.T) {
	testutil.RequireRoot(t)
	if !CanMount() || !Effective(unix.CAP_SYS_ADMIN) {
		t.Fatal("root here has no CAP_SYS_ADMIN")
	}
	if os.Getenv("CAPS_TEST_CHILD") == "1" {
		return
	}
	capsh := testutil.RequireTool(t, "capsh")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(capsh, "--drop=cap_sys_admin", "--", "-c", exe+" -test.run '^TestCanMount$'")
	cmd.Env = append(os.Environ(), "CAPS_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "root here has no CAP_SYS_ADMIN") {
		t.Errorf("without CAP_SYS_ADMIN: %v, want CanMount() false:\n%s", err, out)
	}
}
