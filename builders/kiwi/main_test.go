package kiwi

import (
	"os"
	"testing"
)

// TestMain lets this test binary stand in for imsbuild as the debootstrap
// shim (see MaybeRunBootstrapShim).
func TestMain(m *testing.M) {
	MaybeRunBootstrapShim()
	os.Exit(m.Run())
}
