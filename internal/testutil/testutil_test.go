package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCPUTime(t *testing.T) {
	start := CPUTime(t)
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
	}
	if got := CPUTime(t) - start; got < 10*time.Millisecond {
		t.Errorf("CPUTime grew by %s over 50 ms of spinning, want at least 10ms", got)
	}
}

func TestSSHKey(t *testing.T) {
	key, pub := SSHKey(t)
	if !strings.HasPrefix(pub, "ssh-ed25519 ") {
		t.Errorf("public key = %q, want an ssh-ed25519 line", pub)
	}
	out, err := exec.Command("ssh-keygen", "-y", "-f", key).Output()
	if err != nil || strings.Fields(string(out))[1] != strings.Fields(pub)[1] {
		t.Errorf("ssh-keygen -y %s = %q, %v; want the public key %q", key, out, err, pub)
	}
}

func TestFakeKiwi(t *testing.T) {
	runs := FakeKiwi(t)
	desc, root := t.TempDir(), filepath.Join(t.TempDir(), "root")
	prepare := func(xml string) ([]byte, error) {
		if err := os.WriteFile(filepath.Join(desc, "config.xml"), []byte(xml), 0o644); err != nil {
			t.Fatal(err)
		}
		return exec.Command("kiwi-ng", "system", "prepare", "--description", desc, "--root", root).CombinedOutput()
	}
	if out, err := prepare("<image/>\n"); err != nil {
		t.Fatalf("kiwi-ng system prepare: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/recipe.xml")); err != nil || string(b) != "<image/>\n" {
		t.Errorf("etc/recipe.xml = %q, %v; want the description", b, err)
	}
	os.RemoveAll(root)
	if out, err := prepare("<!-- FAIL --><image/>\n"); err == nil || !strings.Contains(string(out), "broken-pkg") {
		t.Errorf("kiwi-ng with FAIL = %v\n%s; want its failure", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/half")); err != nil {
		t.Errorf("no etc/half after the failure: %v", err)
	}
	if got := runs(); got != 2 {
		t.Errorf("runs() = %d, want 2", got)
	}
}
