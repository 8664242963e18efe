package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/imsbuild/imsbuild/publish/oci"
	"github.com/imsbuild/imsbuild/publish/s3"
)

// remoteDigest identifies the published image an import names: the OCI
// manifest digest, or the sha256 of the IMS manifest.json in S3.
func remoteDigest(ctx context.Context, src string) (string, error) {
	switch {
	case strings.HasPrefix(src, "oci://"):
		return oci.Digest(ctx, strings.TrimPrefix(src, "oci://"), false)
	case strings.HasPrefix(src, "s3://"):
		return s3.ManifestDigest(ctx, s3.Config{}, src)
	}
	return "", fmt.Errorf("import %s: not an oci:// or s3:// URL", src)
}

// fetchRemote downloads the artifacts of a published image into dst and
// returns their paths by artifact name.
func fetchRemote(ctx context.Context, src, dst string) (map[string]string, error) {
	switch {
	case strings.HasPrefix(src, "oci://"):
		arts, err := oci.Pull(ctx, strings.TrimPrefix(src, "oci://"), dst, false)
		if err != nil {
			return nil, err
		}
		files := map[string]string{}
		for name, a := range arts {
			files[name] = a.Path
		}
		return files, nil
	case strings.HasPrefix(src, "s3://"):
		arts, _, err := s3.Fetch(ctx, s3.Config{}, src, dst)
		if err != nil {
			return nil, err
		}
		files := map[string]string{}
		for name, a := range arts {
			files[name] = a.Path
		}
		return files, nil
	}
	return nil, fmt.Errorf("import %s: not an oci:// or s3:// URL", src)
}
