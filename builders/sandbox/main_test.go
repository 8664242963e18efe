package sandbox_test

import (
	"os"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
)

// TestMain lets the native backend re-execute the test binary as the
// sandbox's init.
func TestMain(m *testing.M) {
	sandbox.MaybeRunInit()
	os.Exit(m.Run())
}
