package sandbox_test

import (
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// BenchmarkRunTrue measures the start and teardown cost of a sandbox:
// /bin/true jailed in a busybox root.
func BenchmarkRunTrue(b *testing.B) {
	testutil.RequireRoot(b)
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			sb := be.open(b)
			root := testutil.BusyboxRoot(b, false)
			s := sandbox.Spec{Root: root, Jail: true, Args: []string{"/bin/true"}, Env: []string{"PATH=/bin"}}
			for b.Loop() {
				if err := sb.Run(b.Context(), s); err != nil {
					b.Fatalf("Run() = %v", err)
				}
			}
		})
	}
}
