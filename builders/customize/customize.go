// Package customize applies customize blocks to an unpacked image root:
// files copied in, then scripts run in a sandbox.
package customize

import (
	"context"
	"errors"
	"io"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/spec"
)

// Apply runs steps in order on root. Output of scripts goes to log.
func Apply(ctx context.Context, sb sandbox.Sandbox, root string, steps []spec.Customize, env []string, log io.Writer) error {
	return errors.New("customize: not implemented")
}
