package builderimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayoutScheme prefixes a reference to an OCI image layout directory.
const LayoutScheme = "oci-layout://"

// source is where an image comes from: a registry or an OCI layout.
type source interface {
	// pinned returns the digest the reference names, if it names one.
	pinned() (v1.Hash, bool)
	// image returns the image for platform want and its manifest digest,
	// reading manifests but no layers.
	image(ctx context.Context, want v1.Platform) (v1.Image, v1.Hash, error)
}

// digestSuffix matches a ":sha256:<hex>" or "@sha256:<hex>" selector.
var digestSuffix = regexp.MustCompile(`[:@](sha256:[0-9a-f]{64})$`)

// parseRef tells layout references from registry references.
func parseRef(ref string, opts Options) (source, error) {
	if rest, ok := strings.CutPrefix(ref, LayoutScheme); ok {
		if !strings.HasPrefix(rest, "/") {
			return nil, fmt.Errorf("%s wants an absolute path (oci-layout:///abs/path)", LayoutScheme)
		}
		return parseLayout(rest)
	}
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") || isLayout(ref) {
		return parseLayout(ref)
	}
	nopts := []name.Option{name.StrictValidation}
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, err
	}
	return &registrySource{ref: r, opts: opts}, nil
}

// parseLayout splits "path[:tag|@digest|:digest]" into a layout source. A
// path that is itself a layout wins over reading a suffix as a selector.
func parseLayout(s string) (source, error) {
	l := &layoutSource{dir: s}
	switch m := digestSuffix.FindStringSubmatchIndex(s); {
	case m != nil:
		h, err := v1.NewHash(s[m[2]:m[3]])
		if err != nil {
			return nil, err
		}
		l.dir, l.digest = s[:m[0]], h
	case isLayout(s):
	default:
		if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
			l.dir, l.tag = s[:i], s[i+1:]
			if l.tag == "" {
				return nil, errors.New("empty tag after ':'")
			}
		}
	}
	abs, err := filepath.Abs(l.dir)
	if err != nil {
		return nil, err
	}
	l.dir = abs
	if !isLayout(l.dir) {
		return nil, fmt.Errorf("%s: not an OCI image layout (no oci-layout file)", l.dir)
	}
	return l, nil
}

func isLayout(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "oci-layout"))
	return err == nil && fi.Mode().IsRegular()
}
