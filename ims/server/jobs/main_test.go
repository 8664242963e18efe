package jobs

import (
	"os"
	"testing"

	"github.com/imsbuild/imsbuild/builders/kiwi"
)

// TestMain lets this test binary stand in for imsbuild as the debootstrap
// shim of the create jobs' kiwi builds (see kiwi.MaybeRunBootstrapShim).
func TestMain(m *testing.M) {
	kiwi.MaybeRunBootstrapShim()
	os.Exit(m.Run())
}
