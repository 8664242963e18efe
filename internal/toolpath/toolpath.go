// Package toolpath finds an external tool the way imsbuild's setup
// installs it: on PATH, or in $GOPATH/bin, where scripts/setup-tools.sh
// puts the tools it builds with `go install` (versitygw, crane, cosign,
// oras) and which is often not on a service's or CI job's PATH.
package toolpath

import (
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
)

// Look returns the path of the executable name: found on PATH, else a
// regular executable file in a $GOPATH/bin.
func Look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(gp, "bin", name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in $GOPATH/bin", name)
}
