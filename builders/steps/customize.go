package steps

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/imsbuild/imsbuild/builders/builderimage"
	"github.com/imsbuild/imsbuild/builders/customize"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/spec"
)

// CustomizeKey describes one customize block in a key.
type CustomizeKey struct {
	Script  string            `json:"script,omitempty"` // digest
	Files   map[string]string `json:"files,omitempty"`  // dest → digest
	Env     map[string]string `json:"env,omitempty"`
	Jail    bool              `json:"jail"`
	Network bool              `json:"network"`
	Timeout string            `json:"timeout,omitempty"`
	Builder string            `json:"builder_image,omitempty"` // manifest digest
}

// customizeKeyOf describes customize block c.
func customizeKeyOf(ctx context.Context, c spec.Customize, arch string, k KeyEnv) (CustomizeKey, error) {
	ck := CustomizeKey{Env: c.Env, Jail: c.Jail, Network: c.Network}
	if c.Timeout > 0 {
		ck.Timeout = c.Timeout.String()
	}
	switch {
	case c.Script != "":
		d, err := treehash.File(ctx, c.Script, k.StatCache)
		if err != nil {
			return ck, fmt.Errorf("digest of script %s: %w", c.Script, err)
		}
		ck.Script = d
	case c.Inline != "":
		ck.Script = k.TextDigest(c.Inline)
	}
	if len(c.Files) > 0 {
		ck.Files = map[string]string{}
		for _, f := range c.Files {
			d, err := treehash.File(ctx, f.Source, k.StatCache)
			if err != nil {
				return ck, fmt.Errorf("digest of file %s: %w", f.Source, err)
			}
			if f.HasMode {
				d += " mode=" + spec.FormatMode(f.Mode)
			} else {
				// The copy keeps the source's mode (customize.Files), so
				// that mode decides the image as much as the content does.
				fi, err := os.Stat(f.Source)
				if err != nil {
					return ck, fmt.Errorf("mode of file %s: %w", f.Source, err)
				}
				d += " source_mode=" + spec.FormatMode(fi.Mode())
			}
			if f.Owner != "" {
				d += " owner=" + f.Owner
			}
			ck.Files[f.Dest] = d
		}
	}
	if c.BuilderImage != "" {
		var err error
		if ck.Builder, err = builderimage.Resolve(ctx, c.BuilderImage, builderOptions(arch)); err != nil {
			return ck, fmt.Errorf("builder image %s: %w", c.BuilderImage, err)
		}
	}
	return ck, nil
}

// caCertificatesStep returns a jailed customize step that adds PEM
// certificates to the image trust store (Debian/SUSE layouts, or the bundle
// file itself when the image has no update-ca-certificates).
func caCertificatesStep(work string, pems []string) (spec.Customize, error) {
	dir := filepath.Join(work, "ca")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return spec.Customize{}, err
	}
	c := spec.Customize{Jail: true}
	for i, pem := range pems {
		name := fmt.Sprintf("imsbuild-ca-%d.crt", i)
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, []byte(pem), 0o644); err != nil {
			return c, err
		}
		c.Files = append(c.Files, spec.FileCopy{Dest: "/usr/local/share/ca-certificates/" + name, Source: src})
	}
	sort.Slice(c.Files, func(i, j int) bool { return c.Files[i].Dest < c.Files[j].Dest })
	c.Inline = `set -e
if command -v update-ca-certificates >/dev/null 2>&1; then
  if [ -d /etc/pki/trust/anchors ]; then cp /usr/local/share/ca-certificates/imsbuild-ca-*.crt /etc/pki/trust/anchors/; fi
  update-ca-certificates
else
  mkdir -p /etc/ssl/certs
  cat /usr/local/share/ca-certificates/imsbuild-ca-*.crt >> /etc/ssl/certs/ca-certificates.crt
fi
`
	return c, nil
}

// builderEnv unpacks an OCI builder image (cached by digest under
// stateDir) and runs steps in it with runc. The script and runc's bundle
// (whose config.json holds the script's environment) go to work, the
// step's private scratch directory, rather than /tmp.
func builderEnv(ctx context.Context, ref, arch, stateDir, work string) (customize.Environment, error) {
	rootfs, _, err := builderimage.Unpack(ctx, ref, filepath.Join(stateDir, "builders"), builderOptions(arch))
	if err != nil {
		return customize.Environment{}, fmt.Errorf("builder image %s: %w", ref, err)
	}
	if _, err := sandbox.Open(sandbox.BackendRunc); err != nil { // runc is there, we are root
		return customize.Environment{}, fmt.Errorf("builder image %s: %w", ref, err)
	}
	runc, err := exec.LookPath("runc")
	if err == nil {
		var sb sandbox.Sandbox
		if sb, err = sandbox.NewRunc(runc, sandbox.WithRuncStateDir(work)); err == nil {
			return customize.Environment{Sandbox: sb, BuilderRoot: rootfs, ScriptDir: work}, nil
		}
	}
	return customize.Environment{}, fmt.Errorf("builder image %s: %w", ref, err)
}
