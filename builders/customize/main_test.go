package customize_test

import (
	"os"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
)

// TestMain lets the native sandbox re-execute the test binary.
func TestMain(m *testing.M) {
	sandbox.MaybeRunInit()
	os.Exit(m.Run())
}
