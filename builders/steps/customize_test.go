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
		ck, err := customizeKeyOf(t.Context(), spec.Customize{Jail: true, Files: []spec.FileCopy{fc}}, KeyEnv{})
		if err != nil {
			t.Fatal(err)
		}
		return ck.Files["/etc/motd"]
	}
	plain := keyWith(spec.FileCopy{})
	if plain == keyWith(spec.FileCopy{Mode: 0o600, HasMode: true}) || plain == keyWith(spec.FileCopy{Owner: "1000:1000"}) {
		t.Fatal("mode or owner of a file does not enter the key")
	}
}
