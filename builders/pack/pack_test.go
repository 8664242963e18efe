package pack

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sums(t *testing.T, p string) (sha, md string, size int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, m := sha256.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(s, m), f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(s.Sum(nil)), hex.EncodeToString(m.Sum(nil)), n
}

func byName(arts []Artifact) map[string]Artifact {
	m := map[string]Artifact{}
	for _, a := range arts {
		m[a.Name] = a
	}
	return m
}

func TestPackReproducible(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	root := testutil.BusyboxRoot(t, true)
	opts := Options{SourceDateEpoch: 1700000000, KernelParameters: "console=ttyS0 root=live:LABEL=x", RequireBoot: true}
	var log bytes.Buffer
	opts.Log = &log
	first, err := Pack(t.Context(), root, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("Pack() = %v", err)
	}
	if !strings.Contains(log.String(), "zstd compressed") {
		t.Errorf("log = %q, want mksquashfs' summary", log.String())
	}
	wantNames := []string{ims.ArtifactRootfs, ims.ArtifactKernel, ims.ArtifactInitrd, ims.ArtifactBootParameters}
	if len(first) != len(wantNames) {
		t.Fatalf("Pack() returned %d artifacts, want %d", len(first), len(wantNames))
	}
	for i, a := range first {
		if a.Name != wantNames[i] || a.MediaType != ims.MediaTypeOf(a.Name) || !filepath.IsAbs(a.Path) {
			t.Errorf("artifact %d = %+v, want %s with its media type and an absolute path", i, a, wantNames[i])
		}
		sha, md, size := sums(t, a.Path)
		if a.Name == ims.ArtifactRootfs {
			// Checksums of the rootfs are computed where it is stored.
			if gotSHA, gotMD5, err := Checksums(t.Context(), a.Path); err != nil || gotSHA != sha || gotMD5 != md || a.Size != size || a.SHA256 != "" {
				t.Errorf("rootfs: Checksums() = %s %s %v, size %d, artifact sha256 %q; file has %s %s %d", gotSHA, gotMD5, err, a.Size, a.SHA256, sha, md, size)
			}
			continue
		}
		if a.SHA256 != sha || a.MD5 != md || a.Size != size {
			t.Errorf("%s: sha256 %s md5 %s size %d, file has %s %s %d", a.Name, a.SHA256, a.MD5, a.Size, sha, md, size)
		}
	}
	if b, _ := os.ReadFile(byName(first)[ims.ArtifactBootParameters].Path); string(b) != opts.KernelParameters {
		t.Errorf("boot_parameters = %q, want %q", b, opts.KernelParameters)
	}

	// Same tree with new mtimes: -all-time keeps the rootfs identical.
	later := time.Now().Add(time.Hour)
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(p, later, later)
		}
		return nil
	})
	second, err := Pack(t.Context(), root, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("Pack() again = %v", err)
	}
	for i := range first {
		a, _, _ := sums(t, first[i].Path)
		b, _, _ := sums(t, second[i].Path)
		if a != b {
			t.Errorf("%s: sha256 %s then %s, want reproducible", first[i].Name, a, b)
		}
	}
	rootfsSum, _, _ := sums(t, first[0].Path)
	// A content change does change it.
	write(t, root, map[string]string{"etc/motd": "changed\n"})
	third, err := Pack(t.Context(), root, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("Pack() changed = %v", err)
	}
	if a, _, _ := sums(t, third[0].Path); a == rootfsSum {
		t.Error("rootfs sha256 unchanged after a content change")
	}
}

func TestPackBoot(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	host := t.TempDir()
	hostKernel := filepath.Join(host, "vmlinuz-host")
	if err := os.WriteFile(hostKernel, []byte("HOST KERNEL"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		files          map[string]string
		opts           Options
		kernel, initrd string // wanted contents; "" = absent
	}{
		{
			name:   "symlinked default names",
			files:  map[string]string{"boot/vmlinuz": "->vmlinuz-6.1.0-test", "boot/vmlinuz-6.1.0-test": "k6", "boot/initrd.img-6.1.0-test": "i6"},
			kernel: "k6", initrd: "i6",
		},
		{
			name: "newest version",
			files: map[string]string{
				"boot/vmlinuz-6.1.0-9-amd64": "k9", "boot/vmlinuz-6.1.0-10-amd64": "k10",
				"boot/initrd.img-6.1.0-9-amd64": "i9", "boot/initrd.img-6.1.0-10-amd64": "i10",
			},
			kernel: "k10", initrd: "i10",
		},
		{
			name: "initrd of the kernel's version",
			files: map[string]string{
				"boot/vmlinuz": "->vmlinuz-5.14.0", "boot/vmlinuz-5.14.0": "k5", "boot/vmlinuz-6.0": "k6-notdefault",
				"boot/initramfs-5.14.0.img": "i5", "boot/initramfs-6.0.img": "i6", "boot/initramfs-5.14.0kdump.img": "kdump",
			},
			kernel: "k5", initrd: "i5",
		},
		{
			name:   "exact hints",
			files:  map[string]string{"boot/kern": "kk", "boot/vmlinuz-9": "k9", "boot/sub/rd": "rr", "boot/initrd-9": "i9"},
			opts:   Options{KernelFileName: "kern", InitrdFileName: "/boot/sub/rd"},
			kernel: "kk", initrd: "rr",
		},
		{
			name:   "aarch64 Image",
			files:  map[string]string{"boot/Image-6.1.0-arm64": "ka", "boot/initrd-6.1.0-arm64": "ia"},
			kernel: "ka", initrd: "ia",
		},
		{
			name:   "absolute symlinks resolve inside the root",
			files:  map[string]string{"boot/vmlinuz": "->" + hostKernel, hostKernel[1:]: "ROOT COPY", "boot/initrd": "->/boot/real-initrd", "boot/real-initrd": "ir"},
			kernel: "ROOT COPY", initrd: "ir",
		},
		{
			name:   "absolute symlink out of the root is not followed",
			files:  map[string]string{"boot/vmlinuz": "->" + hostKernel, "boot/initrd": "ir"},
			kernel: "", initrd: "ir",
		},
		{
			name:   "relative escape is clamped at the root",
			files:  map[string]string{"boot/vmlinuz": "->../../../../../../../../.." + hostKernel, "boot/initrd": "ir"},
			kernel: "", initrd: "ir",
		},
		{
			name:   "boot dir symlinked to the host",
			files:  map[string]string{"boot": "->" + host},
			kernel: "", initrd: "",
		},
		{
			name:   "directory named like a kernel",
			files:  map[string]string{"boot/vmlinuz/x": "not a kernel", "boot/vmlinuz-1": "k1"},
			kernel: "k1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tc.files)
			if tc.name == "directory named like a kernel" {
				os.Remove(filepath.Join(root, "boot/vmlinuz/x"))
			}
			arts, err := Pack(t.Context(), root, t.TempDir(), tc.opts)
			if err != nil {
				t.Fatalf("Pack() = %v", err)
			}
			got := byName(arts)
			for _, c := range []struct{ name, want string }{{ims.ArtifactKernel, tc.kernel}, {ims.ArtifactInitrd, tc.initrd}} {
				a, ok := got[c.name]
				switch {
				case c.want == "" && ok:
					b, _ := os.ReadFile(a.Path)
					t.Errorf("%s = %q, want none", c.name, b)
				case c.want != "" && !ok:
					t.Errorf("%s missing, want %q", c.name, c.want)
				case ok:
					if b, _ := os.ReadFile(a.Path); string(b) != c.want {
						t.Errorf("%s = %q, want %q", c.name, b, c.want)
					}
				}
			}
		})
	}
}

// TestPackKernelParameters: the boot_parameters artifact is the explicit
// KernelParameters, else the root's /boot/kernel-parameters (as IMS packs
// it), else the inherited file, else absent.
func TestPackKernelParameters(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	host := t.TempDir()
	inherited := filepath.Join(host, "parent-boot_parameters")
	if err := os.WriteFile(inherited, []byte("console=parent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostParams := filepath.Join(host, "kernel-parameters")
	if err := os.WriteFile(hostParams, []byte("HOST PARAMETERS"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files map[string]string
		opts  Options
		want  string // "" = no boot_parameters artifact
	}{
		{"root file", map[string]string{"boot/kernel-parameters": "console=ttyS0 ip=dhcp\n"}, Options{}, "console=ttyS0 ip=dhcp\n"},
		{"root file through a symlink", map[string]string{"boot/kernel-parameters": "->/etc/params", "etc/params": "quiet"}, Options{}, "quiet"},
		{"explicit wins over the root file", map[string]string{"boot/kernel-parameters": "from root"}, Options{KernelParameters: "explicit"}, "explicit"},
		{"root file wins over the inherited one", map[string]string{"boot/kernel-parameters": "from root"}, Options{InheritedParameters: inherited}, "from root"},
		{"inherited when the root has none", map[string]string{"etc/motd": "x"}, Options{InheritedParameters: inherited}, "console=parent\n"},
		{"none", map[string]string{"etc/motd": "x"}, Options{}, ""},
		{"symlink out of the root is not followed", map[string]string{"boot/kernel-parameters": "->" + hostParams}, Options{}, ""},
		{"a directory is no file", map[string]string{"boot/kernel-parameters/x": "x"}, Options{InheritedParameters: inherited}, "console=parent\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tc.files)
			arts, err := Pack(t.Context(), root, t.TempDir(), tc.opts)
			if err != nil {
				t.Fatalf("Pack() = %v", err)
			}
			a, ok := byName(arts)[ims.ArtifactBootParameters]
			switch {
			case tc.want == "" && ok:
				b, _ := os.ReadFile(a.Path)
				t.Fatalf("boot_parameters = %q, want none", b)
			case tc.want != "" && !ok:
				t.Fatalf("no boot_parameters, want %q", tc.want)
			case ok:
				b, _ := os.ReadFile(a.Path)
				sha, md, size := sums(t, a.Path)
				if string(b) != tc.want || a.SHA256 != sha || a.MD5 != md || a.Size != size || a.MediaType != ims.MediaTypeBootParameters {
					t.Errorf("boot_parameters = %q %+v, want %q with its sums and media type", b, a, tc.want)
				}
				if arts[len(arts)-1].Name != ims.ArtifactBootParameters {
					t.Errorf("boot_parameters is not the last artifact: %+v", arts)
				}
			}
		})
	}
	root := t.TempDir()
	write(t, root, map[string]string{"etc/motd": "x"})
	if _, err := Pack(t.Context(), root, t.TempDir(), Options{InheritedParameters: filepath.Join(host, "missing")}); err == nil || !strings.Contains(err.Error(), "inherited kernel parameters") {
		t.Errorf("Pack() with a missing inherited file = %v, want an inherited kernel parameters error", err)
	}
}

func TestPackExcludes(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireTool(t, "unsquashfs")
	root := t.TempDir()
	write(t, root, map[string]string{
		"image/config.xml": "x", ".profile": "x", ".kconfig": "x", ".buildenv": "x",
		"run/lock": "x", "tmp/junk": "x", "var/cache/kiwi/pkg": "x", "var/cache/apt/keep": "x",
		"opt/secret.key": "x", "opt/keep": "x", "etc/image": "nested name is kept",
	})
	arts, err := Pack(t.Context(), root, t.TempDir(), Options{Exclude: []string{"/opt/secret*"}})
	if err != nil {
		t.Fatalf("Pack() = %v", err)
	}
	out, err := exec.CommandContext(t.Context(), "unsquashfs", "-l", "-d", "", arts[0].Path).Output()
	if err != nil {
		t.Fatalf("unsquashfs -l: %v", err)
	}
	listed := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(l), "/"); ok {
			listed[p] = true
		}
	}
	tests := []struct {
		path string
		want bool
	}{
		{"image", false}, {"image/config.xml", false}, {".profile", false}, {".kconfig", false}, {".buildenv", false},
		{"run", true}, {"run/lock", false}, {"tmp", true}, {"tmp/junk", false},
		{"var/cache/kiwi", false}, {"var/cache/apt/keep", true},
		{"opt/secret.key", false}, {"opt/keep", true}, {"etc/image", true},
	}
	for _, tc := range tests {
		if listed[tc.path] != tc.want {
			t.Errorf("%s in rootfs = %v, want %v", tc.path, listed[tc.path], tc.want)
		}
	}
}

func TestPackCompression(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireTool(t, "unsquashfs")
	root := t.TempDir()
	write(t, root, map[string]string{"etc/hostname": strings.Repeat("node\n", 1000)})
	tests := []struct {
		comp  string
		level int
	}{{"", 0}, {"zstd", 19}, {"xz", 0}, {"gzip", 6}, {"lz4", 0}, {"lzo", 0}}
	for _, tc := range tests {
		t.Run(tc.comp, func(t *testing.T) {
			arts, err := Pack(t.Context(), root, t.TempDir(), Options{Compression: tc.comp, Level: tc.level, BlockSize: 128 << 10})
			if err != nil {
				t.Fatalf("Pack() = %v", err)
			}
			out, err := exec.CommandContext(t.Context(), "unsquashfs", "-s", arts[0].Path).Output()
			if err != nil {
				t.Fatalf("unsquashfs -s: %v", err)
			}
			want := tc.comp
			if want == "" {
				want = "zstd"
			}
			if !strings.Contains(string(out), "Compression "+want) || !strings.Contains(string(out), "Block size 131072") {
				t.Errorf("unsquashfs -s = %s, want compression %s, block size 131072", out, want)
			}
		})
	}
}

func TestPackErrors(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	root := t.TempDir()
	write(t, root, map[string]string{"etc/hostname": "node"})
	tests := []struct {
		name   string
		root   string
		outDir string
		opts   Options
		want   string
	}{
		{"unknown compression", root, "", Options{Compression: "brotli"}, `unknown compression "brotli"`},
		{"xz level", root, "", Options{Compression: "xz", Level: 6}, "xz takes no level"},
		{"zstd level", root, "", Options{Level: 30}, "out of range 1..22"},
		{"block size", root, "", Options{BlockSize: 3000}, "block size 3000"},
		{"epoch", root, "", Options{SourceDateEpoch: -1}, "source date epoch"},
		{"missing root", filepath.Join(root, "nope"), "", Options{}, "no such file"},
		{"no kernel", root, "", Options{RequireBoot: true}, "no kernel in /boot"},
		{"mksquashfs fails", root, filepath.Join(root, "missing-out-dir"), Options{}, "mksquashfs: exit status"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.outDir
			if out == "" {
				out = t.TempDir()
			}
			_, err := Pack(t.Context(), tc.root, out, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Pack() = %v, want an error with %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestToolVersion(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	v, err := ToolVersion(t.Context())
	if err != nil || !strings.HasPrefix(v, "mksquashfs version ") {
		t.Fatalf("ToolVersion() = %q, %v; want mksquashfs version …", v, err)
	}
}

// TestPackEnvironment: mksquashfs gets PATH and the allowlisted variables
// only, like every other tool, never the rest of the host environment.
func TestPackEnvironment(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	real, err := exec.LookPath("mksquashfs")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	dump := filepath.Join(bin, "env")
	script := "#!/bin/sh\nenv > " + dump + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "mksquashfs"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("IMSBUILD_TEST_HOST_SECRET", "leaked")
	root := t.TempDir()
	write(t, root, map[string]string{"etc/hostname": "node\n"})
	opts := Options{Env: []string{"HTTP_PROXY=http://proxy:3128", "SOURCE_DATE_EPOCH=5"}, SourceDateEpoch: 5}
	if _, err := Pack(t.Context(), root, t.TempDir(), opts); err != nil {
		t.Fatalf("Pack() = %v", err)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	if strings.Contains(env, "IMSBUILD_TEST_HOST_SECRET") || strings.Contains(env, "SOURCE_DATE_EPOCH") {
		t.Errorf("mksquashfs environment has host or refused variables:\n%s", env)
	}
	if !strings.Contains(env, "HTTP_PROXY=http://proxy:3128\n") || !strings.Contains(env, "PATH=") {
		t.Errorf("mksquashfs environment lacks PATH or an allowlisted variable:\n%s", env)
	}
}

// TestPackStatsSummary: with Verbose set, mksquashfs' statistics go there in
// full and Log gets one line summing them up.
func TestPackStatsSummary(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	root := t.TempDir()
	write(t, root, map[string]string{"etc/hostname": "node\n", "etc/motd": "hello\n"})
	var log, verbose bytes.Buffer
	if _, err := Pack(t.Context(), root, t.TempDir(), Options{Log: &log, Verbose: &verbose}); err != nil {
		t.Fatalf("Pack() = %v", err)
	}
	if !strings.Contains(verbose.String(), "Number of inodes") {
		t.Errorf("verbose = %q, want mksquashfs' statistics", verbose.String())
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "mksquashfs: zstd compressed, ") ||
		!strings.Contains(lines[0], "% of uncompressed filesystem size") || !strings.Contains(lines[0], ", 2 files, 2 directories") {
		t.Errorf("log = %q, want one summary line", log.String())
	}
}
