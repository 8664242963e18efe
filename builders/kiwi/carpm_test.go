package kiwi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/rpmpack"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

var caUpdate = flag.Bool("update", false, "rewrite the golden files in testdata")

// fixedCA is a CA certificate that never changes, for golden digests.
func fixedCA(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/carpm-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeCARPM writes the CA RPM of pems into dir and returns its path.
func writeCARPM(t *testing.T, dir string, pems []string) string {
	t.Helper()
	name, data, err := caRPM(pems)
	if err != nil {
		t.Fatalf("caRPM() = %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// caCmd runs a command and returns its stdout, failing the test on an error.
func caCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

var caAnchors = []string{
	"/etc/pki/ca-trust/source/anchors/imsbuild-1.pem",
	"/etc/pki/ca-trust/source/anchors/imsbuild-2.pem",
	"/etc/pki/trust/anchors/imsbuild-1.pem",
	"/etc/pki/trust/anchors/imsbuild-2.pem",
}

// TestCARPM reads the generated package with the real rpm tool.
func TestCARPM(t *testing.T) {
	testutil.RequireTool(t, "rpm")
	ca1, ca2 := testCA(t, "one"), strings.TrimSuffix(testCA(t, "two"), "\n")
	p := writeCARPM(t, t.TempDir(), []string{ca1, ca2})

	got := caCmd(t, "rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{BUILDHOST} %{BUILDTIME} %{SOURCERPM}", p)
	f := strings.Fields(got)
	if len(f) != 7 || f[0] != caRPMName || f[1] != "1.0" || len(f[2]) != 12 || f[3] != "noarch" || f[4] != "imsbuild" || f[5] != "1704067200" {
		t.Fatalf("rpm -qp --queryformat = %q", got)
	}
	if want := fmt.Sprintf("%s-1.0-%s.noarch.rpm", caRPMName, f[2]); filepath.Base(p) != want {
		t.Errorf("file name = %s, want %s", filepath.Base(p), want)
	}
	if got := strings.Fields(caCmd(t, "rpm", "-qlp", p)); !slices.Equal(got, caAnchors) {
		t.Errorf("rpm -qlp = %q, want %q", got, caAnchors)
	}
	if got := caCmd(t, "rpm", "-qp", "--requires", p); strings.TrimSpace(got) != "" {
		t.Errorf("rpm -qp --requires = %q, want none", got)
	}
	scripts := caCmd(t, "rpm", "-qp", "--scripts", p)
	for _, want := range []string{
		"posttrans scriptlet (using /bin/sh):\n" + caRPMScript,
		"postuninstall scriptlet (using /bin/sh):\n" + caRPMScript,
	} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm -qp --scripts =\n%s\nwant it to contain\n%s", scripts, want)
		}
	}
	if got := caCmd(t, "rpm", "-K", p); !strings.Contains(got, "digests OK") {
		t.Errorf("rpm -K = %q, want digests OK", got)
	}
}

// TestCARPMReproducible: the same certificates give the same bytes (pinned
// by a golden digest), other certificates another release.
func TestCARPMReproducible(t *testing.T) {
	ca := fixedCA(t)
	name1, data1, err := caRPM([]string{ca})
	if err != nil {
		t.Fatal(err)
	}
	name2, data2, err := caRPM([]string{ca})
	if err != nil {
		t.Fatal(err)
	}
	if name1 != name2 || !bytes.Equal(data1, data2) {
		t.Fatalf("two builds differ: %s (%d bytes) and %s (%d bytes)", name1, len(data1), name2, len(data2))
	}
	got := fmt.Sprintf("%s sha256:%x\n", name1, sha256.Sum256(data1))
	golden := "testdata/carpm.golden"
	if *caUpdate {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("CA RPM = %s, want %s (run with -update if the change is meant)", got, want)
	}
	for _, pems := range [][]string{{ca, ca}, {testCA(t, "other")}, {strings.TrimSuffix(ca, "\n")}} {
		other, _, err := caRPM(pems)
		if err != nil {
			t.Fatal(err)
		}
		if other == name1 {
			t.Errorf("caRPM(%d other certificates) = %s, the same release", len(pems), other)
		}
	}
}

// fakeTrustTool is a stand-in for update-ca-certificates or update-ca-trust
// in a busybox root: it records how it was called and builds a bundle of
// the anchors it is meant to read, then exits with status.
func fakeTrustTool(anchors, bundle string, status int) string {
	return fmt.Sprintf(`#!/bin/sh
bb=/bin/busybox
$bb mkdir -p $($bb dirname %[2]s)
echo "$0 $*" >> /trust-tool.log
$bb cat %[1]s/*.pem > %[2]s
exit %[3]d
`, anchors, bundle, status)
}

// TestCARPMInstall installs the package with the real rpm: its files land
// with the PEM bytes, and its %%posttrans runs whichever trust tool the root
// has and never fails the transaction.
func TestCARPMInstall(t *testing.T) {
	testutil.RequireTool(t, "rpm")
	ca1, ca2 := testCA(t, "one"), testCA(t, "two")
	p := writeCARPM(t, t.TempDir(), []string{ca1, ca2})

	t.Run("no scripts", func(t *testing.T) {
		root := t.TempDir()
		caCmd(t, "rpm", "--root", root, "-i", "--noscripts", p)
		for _, a := range caAnchors {
			want := ca1
			if strings.HasSuffix(a, "-2.pem") {
				want = ca2
			}
			if got, err := os.ReadFile(filepath.Join(root, a)); err != nil || string(got) != want {
				t.Errorf("%s = %q, %v; want the PEM", a, got, err)
			}
		}
		if got := caCmd(t, "rpm", "--root", root, "-q", caRPMName); !strings.HasPrefix(got, caRPMName+"-1.0-") {
			t.Errorf("rpm -q = %q", got)
		}
	})

	tests := []struct {
		name    string
		tool    string // installed in /usr/sbin; "" for none
		args    string // the tool's arguments
		status  int
		bundle  string // the file the tool writes; "" for none
		anchors string
	}{
		{"suse", "update-ca-certificates", "", 0, "/var/lib/ca-certificates/ca-bundle.pem", "/etc/pki/trust/anchors"},
		{"rhel", "update-ca-trust", "extract", 0, "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/pki/ca-trust/source/anchors"},
		{"tool fails", "update-ca-certificates", "", 3, "/var/lib/ca-certificates/ca-bundle.pem", "/etc/pki/trust/anchors"},
		{"no tool", "", "", 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testutil.RequireRoot(t) // rpm chroots to run the scriptlets
			root := testutil.BusyboxRoot(t, false)
			if tc.tool != "" {
				mustWrite(t, filepath.Join(root, "usr/sbin", tc.tool), fakeTrustTool(tc.anchors, tc.bundle, tc.status), 0o755)
			}
			caCmd(t, "rpm", "--root", root, "-i", p)
			log, _ := os.ReadFile(filepath.Join(root, "trust-tool.log"))
			if tc.tool == "" {
				if len(log) != 0 {
					t.Errorf("trust tool log = %q, want none", log)
				}
				return
			}
			if want := "/usr/sbin/" + tc.tool + " " + tc.args + "\n"; string(log) != want {
				t.Errorf("trust tool log = %q, want %q (one run, after the files)", log, want)
			}
			if got, _ := os.ReadFile(filepath.Join(root, tc.bundle)); string(got) != ca1+ca2 {
				t.Errorf("%s = %q, want both certificates", tc.bundle, got)
			}
			// %postun runs the tool again, on the anchors left.
			caCmd(t, "rpm", "--root", root, "-e", caRPMName)
			if got, _ := os.ReadFile(filepath.Join(root, tc.bundle)); strings.Contains(string(got), "CERTIFICATE") {
				t.Errorf("%s after erase = %q, want no certificates", tc.bundle, got)
			}
		})
	}
}

// caTree returns the regular files below dir by relative path.
func caTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestCARepo: the repository's metadata is reproducible and real zypper and
// dnf install the package from it into an empty root.
func TestCARepo(t *testing.T) {
	testutil.RequireTool(t, "createrepo_c")
	ca := fixedCA(t)
	repo := filepath.Join(t.TempDir(), "repo")
	if err := writeCARepo(repo, []string{ca}); err != nil {
		t.Fatalf("writeCARepo() = %v", err)
	}
	if err := writeCARepo(repo, []string{ca}); err != nil { // replaces it
		t.Fatalf("writeCARepo() again = %v", err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := writeCARepo(other, []string{ca}); err != nil {
		t.Fatal(err)
	}
	files := caTree(t, repo)
	if otherFiles := caTree(t, other); len(files) != len(otherFiles) || len(files) < 5 {
		t.Errorf("repositories have %d and %d files", len(files), len(otherFiles))
	}
	for name, data := range caTree(t, other) {
		if files[name] != data {
			t.Errorf("repository file %s differs between two runs", name)
		}
	}
	if _, ok := files["repodata/repomd.xml"]; !ok {
		t.Fatalf("no repodata/repomd.xml in %v", files)
	}
	if entries, _ := os.ReadDir(filepath.Dir(repo)); len(entries) != 1 {
		t.Errorf("%s holds %v, want only the repository", filepath.Dir(repo), entries)
	}

	managers := []struct {
		tool    string
		install func(t *testing.T, root string)
	}{
		{"zypper", func(t *testing.T, root string) {
			caCmd(t, "zypper", "--non-interactive", "--root", root, "addrepo", "--no-gpgcheck", repo, "ca-test-repo")
			if got := caCmd(t, "zypper", "--non-interactive", "--root", root, "search", "-s", caRPMName); !strings.Contains(got, "ca-test-repo") {
				t.Errorf("zypper search = %s", got)
			}
			caCmd(t, "zypper", "--non-interactive", "--root", root, "install", caRPMName)
		}},
		{"dnf", func(t *testing.T, root string) {
			caCmd(t, "dnf", "-y", "--installroot", root, "--releasever=1", "--setopt=reposdir="+filepath.Join(root, "none"),
				"--setopt=cachedir="+filepath.Join(root, "dnf-cache"), "--repofrompath=ca-test-repo,"+repo, "--nogpgcheck",
				"install", caRPMName)
		}},
	}
	for _, m := range managers {
		t.Run(m.tool, func(t *testing.T) {
			testutil.RequireTool(t, m.tool)
			root := t.TempDir()
			m.install(t, root)
			for _, d := range caAnchorDirs {
				a := filepath.Join(root, d, "imsbuild-1.pem")
				if got, err := os.ReadFile(a); err != nil || string(got) != ca {
					t.Errorf("%s = %q, %v; want the PEM", a, got, err)
				}
			}
		})
	}
}

// zypperXML is an RPM description with a commented-out bootstrap section
// before the real one.
const zypperXML = `<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="7.5" name="sles">
    <description type="system">
        <author>imsbuild</author>
        <contact>imsbuild@example.com</contact>
        <specification>test</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>zypper</packagemanager>
        <type image="tbz"/>
    </preferences>
    <repository type="rpm-md">
        <source path="http://example.com/repo"/>
    </repository>
    <!-- <packages type="bootstrap"><package name="old"/></packages> -->
    <packages type="image">
        <package name="ca-certificates"/>
    </packages>
    <packages type="bootstrap">
        <package name="filesystem"/>
    </packages>
</image>
`

const zypperXMLInjected = `<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="7.5" name="sles">
    <description type="system">
        <author>imsbuild</author>
        <contact>imsbuild@example.com</contact>
        <specification>test</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>zypper</packagemanager>
        <type image="tbz"/>
    </preferences>
    <repository type="rpm-md">
        <source path="http://example.com/repo"/>
    </repository>
    <!-- <packages type="bootstrap"><package name="old"/></packages> -->
    <packages type="image">
        <package name="ca-certificates"/>
    </packages>
    <packages type="bootstrap">
        <package name="imsbuild-ca-certificates"/>
        <package name="filesystem"/>
    </packages>
    <repository type="rpm-md" alias="imsbuild-ca" imageinclude="false">
        <source path="this://imsbuild-ca-repo"/>
    </repository>
</image>
`

// kiwiView loads the description in dir with kiwi-ng's own code (which
// validates it against kiwi's schema) and returns what kiwi reads of it:
// one line of bootstrap packages, then each build repository's path and
// whether it goes into the image, each line marked "kiwi: ".
const kiwiView = `
import sys
from kiwi.xml_description import XMLDescription
from kiwi.xml_state import XMLState
state = XMLState(XMLDescription(sys.argv[1]).load())
print('kiwi:', ' '.join(state.get_bootstrap_packages()))
for r in state.get_repository_sections_used_for_build():
    print('kiwi:', r.get_source().get_path(), bool(r.get_imageinclude()))
`

func TestInjectCACertsRPM(t *testing.T) {
	testutil.RequireTool(t, "createrepo_c")
	ca := fixedCA(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.xml")
	mustWrite(t, file, zypperXML, 0o644)
	if err := InjectCACerts(dir, []string{ca}); err != nil {
		t.Fatalf("InjectCACerts() = %v", err)
	}
	if got, _ := os.ReadFile(file); string(got) != zypperXMLInjected {
		t.Fatalf("config.xml =\n%s\nwant\n%s", got, zypperXMLInjected)
	}
	repo := caTree(t, filepath.Join(dir, caRepo))
	name, data, _ := caRPM([]string{ca})
	if repo[name] != string(data) || repo["repodata/repomd.xml"] == "" {
		t.Errorf("%s holds %d files, want %s and rpm-md metadata", caRepo, len(repo), name)
	}
	for _, f := range []string{"config.sh", caArchive} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written for an rpm recipe", f)
		}
	}
	if err := InjectCACerts(dir, []string{ca}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file); string(got) != zypperXMLInjected {
		t.Errorf("a second injection changed config.xml:\n%s", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("description holds %v, want config.xml and %s", entries, caRepo)
	}

	t.Run("kiwi reads it", func(t *testing.T) {
		// kiwi's own interpreter, from the shebang of kiwi-ng.
		b, err := os.ReadFile(testutil.RequireTool(t, "kiwi-ng"))
		if err != nil {
			t.Fatal(err)
		}
		python, _, _ := strings.Cut(strings.TrimPrefix(string(b), "#!"), "\n")
		out := caCmd(t, strings.TrimSpace(python), "-c", kiwiView, file)
		var got []string
		for _, l := range strings.Split(out, "\n") {
			if s, ok := strings.CutPrefix(l, "kiwi: "); ok {
				got = append(got, s)
			}
		}
		// kiwi adds the package manager to the bootstrap packages.
		want := []string{
			"filesystem imsbuild-ca-certificates zypper",
			"http://example.com/repo False",
			"dir://" + filepath.Join(dir, caRepo) + " False",
		}
		if !slices.Equal(got, want) {
			t.Errorf("kiwi reads %q, want %q", got, want)
		}
	})
}

func TestInjectCACertsRPMNoCreaterepo(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "config.xml"), zypperXML, 0o644)
	t.Setenv("PATH", t.TempDir())
	err := InjectCACerts(dir, []string{fixedCA(t)})
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "createrepo_c (Debian package createrepo-c)") {
		t.Fatalf("InjectCACerts() = %v, want exec.ErrNotFound naming createrepo_c and createrepo-c", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "config.xml")); string(got) != zypperXML {
		t.Errorf("config.xml changed despite the error")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("description holds %v after the error", entries)
	}
}

func TestAddBootstrap(t *testing.T) {
	const entry = `<package name="x"/>`
	tests := []struct{ name, in, want string }{
		{"section", "<image>\n    <packages type='bootstrap'>\n        <package name=\"a\"/>\n    </packages>\n</image>\n",
			"<image>\n    <packages type='bootstrap'>\n        <package name=\"x\"/>\n        <package name=\"a\"/>\n    </packages>\n</image>\n"},
		{"no section", "<image>\n</image>\n",
			"<image>\n    <packages type=\"bootstrap\">\n        <package name=\"x\"/>\n    </packages>\n</image>\n"},
		{"self-closing section", "<image>\n    <packages type=\"bootstrap\"/>\n</image>\n",
			"<image>\n    <packages type=\"bootstrap\">\n        <package name=\"x\"/>\n    </packages>\n</image>\n"},
		{"commented-out section only", "<image>\n    <!-- <packages type=\"bootstrap\"/> -->\n</image>\n",
			"<image>\n    <!-- <packages type=\"bootstrap\"/> -->\n    <packages type=\"bootstrap\">\n        <package name=\"x\"/>\n    </packages>\n</image>\n"},
		{"not a child of image", "<image>\n    <x><packages type=\"bootstrap\"/></x>\n</image>\n",
			"<image>\n    <x><packages type=\"bootstrap\"/></x>\n    <packages type=\"bootstrap\">\n        <package name=\"x\"/>\n    </packages>\n</image>\n"},
		{"has it", "<image><packages type=\"bootstrap\"><package name=\"x\"/></packages></image>",
			"<image><packages type=\"bootstrap\"><package name=\"x\"/></packages></image>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "config.xml")
			mustWrite(t, file, tc.in, 0o644)
			if err := addBootstrap(file, entry); err != nil {
				t.Fatalf("addBootstrap() = %v", err)
			}
			if got, _ := os.ReadFile(file); string(got) != tc.want {
				t.Errorf("config.xml =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// testShellRPM builds a package that gives a root /bin/sh (busybox) and a
// stand-in trust tool, so that the CA RPM's %posttrans runs in a bootstrap
// install without a distribution's repositories.
func testShellRPM(t *testing.T, dir, tool, anchors, bundle string) {
	t.Helper()
	bb, err := os.ReadFile(testutil.RequireTool(t, "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := rpmpack.NewRPM(rpmpack.RPMMetaData{Name: "imsbuild-test-shell", Version: "1", Release: "1", Arch: "noarch", Summary: "test", Description: "test", Licence: "GPL-2.0"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []rpmpack.RPMFile{
		{Name: "/bin/busybox", Body: bb, Mode: 0o755},
		{Name: "/bin/sh", Body: []byte("busybox"), Mode: 0o120777},
		{Name: "/usr/sbin/" + tool, Body: []byte(fakeTrustTool(anchors, bundle, 0)), Mode: 0o755},
	} {
		f.Owner, f.Group = "root", "root"
		r.AddFile(f)
	}
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "imsbuild-test-shell-1-1.noarch.rpm"), b.String(), 0o644)
	caCmd(t, "createrepo_c", "--quiet", "--no-database", dir)
}

// TestPrepareCARPM runs a real kiwi-ng system prepare (zypper and dnf) of an
// RPM description whose only repositories are local: the injected CA
// repository and one with a shell and a stand-in trust tool. The
// description is moved after the injection, so no absolute path may be
// baked in. The CA package is installed in the bootstrap phase and its
// %posttrans builds the trust store, which holds the certificate.
func TestPrepareCARPM(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng runs; skipped with -short")
	}
	testutil.RequireTool(t, "kiwi-ng")
	testutil.RequireTool(t, "createrepo_c")
	requireNamespaces(t)
	tests := []struct {
		manager, tool, anchors, bundle string
	}{
		{"zypper", "update-ca-certificates", "/etc/pki/trust/anchors", "/var/lib/ca-certificates/ca-bundle.pem"},
		{"dnf", "update-ca-trust", "/etc/pki/ca-trust/source/anchors", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.manager, func(t *testing.T) {
			testutil.RequireTool(t, tc.manager)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			work := t.TempDir()
			desc := filepath.Join(work, "desc")
			if err := os.MkdirAll(filepath.Join(desc, "shell-repo"), 0o755); err != nil {
				t.Fatal(err)
			}
			testShellRPM(t, filepath.Join(desc, "shell-repo"), tc.tool, tc.anchors, tc.bundle)
			xml := `<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="7.5" name="ca-test">
    <description type="system"><author>imsbuild</author><contact>imsbuild@example.com</contact><specification>test</specification></description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>` + tc.manager + `</packagemanager>
        <type image="tbz"/>
    </preferences>
    <repository type="rpm-md" alias="shell"><source path="this://shell-repo"/></repository>
    <packages type="image"/>
    <packages type="bootstrap">
        <package name="imsbuild-test-shell"/>
    </packages>
</image>
`
			mustWrite(t, filepath.Join(desc, "config.xml"), xml, 0o644)
			ca := testCA(t, "site")
			if err := InjectCACerts(desc, []string{ca}); err != nil {
				t.Fatal(err)
			}
			moved := filepath.Join(work, "moved")
			if err := os.Rename(desc, moved); err != nil {
				t.Fatal(err)
			}
			cacheDir, err := os.MkdirTemp("/var/cache", "imsbuild-kiwi-test-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(cacheDir) })
			root := filepath.Join(work, "root")
			start := time.Now()
			err = Prepare(ctx, PrepareOptions{Description: moved, Root: root, SharedCacheDir: cacheDir, Log: testWriter{t}})
			if err != nil {
				t.Fatalf("Prepare() = %v", err)
			}
			t.Logf("prepare took %s", time.Since(start).Round(100*time.Millisecond))
			if got, _ := os.ReadFile(filepath.Join(root, tc.anchors, "imsbuild-1.pem")); string(got) != ca {
				t.Errorf("anchor = %q, want the PEM", got)
			}
			if got, _ := os.ReadFile(filepath.Join(root, tc.bundle)); string(got) != ca {
				t.Errorf("trust store %s = %q, want the certificate", tc.bundle, got)
			}
			for _, d := range []string{"etc/zypp/repos.d", "etc/yum.repos.d"} {
				entries, _ := os.ReadDir(filepath.Join(root, d))
				for _, e := range entries {
					if strings.Contains(e.Name(), "imsbuild-ca") {
						t.Errorf("the CA repository is configured in the image: %s/%s", d, e.Name())
					}
				}
			}
		})
	}
}
