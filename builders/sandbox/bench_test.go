package sandbox_test

import (
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// BenchmarkRunTrue measures the start and teardown cost of a sandbox:
// /bin/true jailed in a busybox root.
func BenchmarkRunTrue(b *testing.B) {
	for _, sb := range backends(b) {
		b.Run(sb.Name(), func(b *testing.B) {
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
