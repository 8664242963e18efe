package steps

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/imsbuild/imsbuild/spec"
)

func TestFileModeAndOwnerInKey(t *testing.T) {
	src := filepath.Join(t.TempDir(), "motd")
	if err := os.WriteFile(src, []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keyWith := func(fc spec.FileCopy) string {
		t.Helper()
		fc.Dest, fc.Source = "/etc/motd", src
		ck, err := customizeKeyOf(t.Context(), spec.Customize{Jail: true, Files: []spec.FileCopy{fc}}, "x86_64", KeyEnv{})
		if err != nil {
			t.Fatal(err)
		}
		return ck.Files["/etc/motd"]
	}
	plain := keyWith(spec.FileCopy{})
	if plain == keyWith(spec.FileCopy{Mode: 0o600, HasMode: true}) || plain == keyWith(spec.FileCopy{Owner: "1000:1000"}) {
		t.Fatal("mode or owner of a file does not enter the key")
	}
	// Without a mode attribute the copy keeps the source's mode: a chmod
	// of the source changes the image, so it changes the key (build
	// --check found it: same key, /etc/motd 0644 → 0600).
	if err := os.Chmod(src, 0o600); err != nil {
		t.Fatal(err)
	}
	if keyWith(spec.FileCopy{}) == plain {
		t.Fatal("the source's mode does not enter the key, yet the copy keeps it")
	}
	if again := keyWith(spec.FileCopy{}); again != keyWith(spec.FileCopy{}) || again == plain {
		t.Fatalf("a file's key is not stable: %q", again)
	}
}
