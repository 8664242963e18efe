package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/spec"
)

// blobSum re-reads a blob from disk: the cached bytes, not the recorded digest.
func blobSum(t *testing.T, f *fixture, id string, e *Engine) string {
	t.Helper()
	r := e.result(id)
	fh, err := os.Open(f.cache.BlobPath(r.Outputs["rootfs"].Digest))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// TestParentUntouched customizes, fails a customize and customizes
// non-jailed; the parent's cached rootfs stays byte-identical throughout.
func TestParentUntouched(t *testing.T) {
	f := newFixture(t)
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatal(err)
	}
	want := string(e.result("image.base").Outputs["rootfs"].Digest)
	variants := [][]spec.Customize{
		{{Jail: true, Inline: "rm -rf /bin/* /etc; echo gone > /marker\n"}},
		{{Jail: true, Inline: "echo x > /etc/x; exit 9\n"}},
		{{Jail: false, Inline: "rm -rf /mnt/image/etc && touch /mnt/image/nonjailed\n"}},
	}
	for i, steps := range variants {
		f.cfg.Images["compute"].Customize = steps
		_, _ = f.build(t, t.Context(), Options{}, "image.compute")
		if got := blobSum(t, f, "image.base", e); got != want {
			t.Fatalf("variant %d: parent rootfs bytes now hash to %s, want %s", i, got, want)
		}
	}
}

// TestKernelReextractedAndParameters: a script that installs a new kernel
// gives the child a new kernel artifact; kernel_parameters becomes the
// boot_parameters artifact.
func TestKernelReextractedAndParameters(t *testing.T) {
	f := newFixture(t)
	f.cfg.Images["compute"].Customize[0].Inline = "echo new kernel > /boot/vmlinuz-6.9.0-new\nln -sf vmlinuz-6.9.0-new /boot/vmlinuz\n"
	f.cfg.Images["compute"].KernelParameters = "console=ttyS0 root=live:LABEL=x"
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatal(err)
	}
	base, child := e.result("image.base").Outputs, e.result("image.compute").Outputs
	if base["kernel"].Digest == child["kernel"].Digest {
		t.Fatal("child kernel equals the parent's after installing a new kernel")
	}
	read := func(o string) string {
		t.Helper()
		rc, err := f.cache.Open(t.Context(), child[o].Digest)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	if got := read("kernel"); got != "new kernel\n" {
		t.Fatalf("child kernel = %q", got)
	}
	if got := read("boot_parameters"); !strings.Contains(got, "console=ttyS0") {
		t.Fatalf("boot_parameters = %q", got)
	}
	if child["initrd"].Digest != base["initrd"].Digest {
		t.Fatal("initrd changed though the script did not touch it")
	}
}

// TestCACertificatesInTrustStore: ca_certificates of a customized image end
// up in its trust store (the bundle, as this image has no update-ca-certificates).
func TestCACertificatesInTrustStore(t *testing.T) {
	f := newFixture(t)
	pem := "-----BEGIN CERTIFICATE-----\nMIIBtestcertificatebody\n-----END CERTIFICATE-----\n"
	f.cfg.Images["compute"].CACertificates = []string{pem}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatal(err)
	}
	files := unsquash(t, f, e, "image.compute")
	if !strings.Contains(files["usr/local/share/ca-certificates/imsbuild-ca-0.crt"], "MIIBtest") {
		t.Fatal("certificate not installed under /usr/local/share/ca-certificates")
	}
	if !strings.Contains(files["etc/ssl/certs/ca-certificates.crt"], "MIIBtest") {
		t.Fatalf("certificate not in the trust bundle; files: %d", len(files))
	}
}

// TestKernelParametersInherited: boot_parameters comes from kernel_parameters,
// else from the root's /boot/kernel-parameters (as IMS packs it), else from
// the parent; a customized child keeps its parent's.
func TestKernelParametersInherited(t *testing.T) {
	read := func(t *testing.T, f *fixture, outs map[string]cache.Output) string {
		t.Helper()
		o, ok := outs[ims.ArtifactBootParameters]
		if !ok {
			return "<none>"
		}
		rc, err := f.cache.Open(t.Context(), o.Digest)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name             string
		rootFile         string // /boot/kernel-parameters of base's root; "" = none
		parent, child    string // kernel_parameters attributes
		script           string // compute's customize script
		wantBase, wantCh string
	}{
		{name: "explicit parent", parent: "console=ttyS0 parent", wantBase: "console=ttyS0 parent", wantCh: "console=ttyS0 parent"},
		{name: "root file", rootFile: "console=tty0 rd.shell\n", wantBase: "console=tty0 rd.shell\n", wantCh: "console=tty0 rd.shell\n"},
		{name: "child edits the root file", rootFile: "old\n", script: "echo new > /boot/kernel-parameters\n", wantBase: "old\n", wantCh: "new\n"},
		{name: "explicit child wins", rootFile: "root\n", parent: "parent", child: "child", wantBase: "parent", wantCh: "child"},
		{name: "none", wantBase: "<none>", wantCh: "<none>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.rootFile != "" {
				if err := os.WriteFile(filepath.Join(f.cfg.Images["base"].Import, "boot", ims.KernelParametersFile), []byte(tc.rootFile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f.cfg.Images["base"].KernelParameters = tc.parent
			f.cfg.Images["compute"].KernelParameters = tc.child
			if tc.script != "" {
				f.cfg.Images["compute"].Customize[0].Inline = tc.script
			}
			e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{WorkDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
				t.Fatal(err)
			}
			if got := read(t, f, e.result("image.base").Outputs); got != tc.wantBase {
				t.Errorf("base boot_parameters = %q, want %q", got, tc.wantBase)
			}
			if got := read(t, f, e.result("image.compute").Outputs); got != tc.wantCh {
				t.Errorf("compute boot_parameters = %q, want %q", got, tc.wantCh)
			}
		})
	}
}
