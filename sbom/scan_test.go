package sbom

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/rpmpack"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// nevra is what both the SBOM and the package manager's own query report.
func nevras(pkgs []Package, typ string) []string {
	var out []string
	for _, p := range pkgs {
		if p.Type == typ {
			out = append(out, p.Name+" "+p.FullVersion()+" "+p.Arch)
		}
	}
	slices.Sort(out)
	return out
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestScanDpkgHost compares Scan with dpkg-query on a snapshot of the
// host's own dpkg database (a real Debian one; the snapshot, because other
// processes may install packages meanwhile).
func TestScanDpkgHost(t *testing.T) {
	testutil.RequireTool(t, "dpkg-query")
	status, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		t.Fatalf("dpkg-query is installed but the dpkg database is not readable: %v", err)
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, dpkgStatus), string(status))
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg/updates"), 0o755); err != nil {
		t.Fatal(err)
	}
	// bash (required: every Debian root has it) has a machine-readable
	// copyright file whose License fields include GPL-3+.
	bashCopyright, err := os.ReadFile("/usr/share/doc/bash/copyright")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "usr/share/doc/bash/copyright"), string(bashCopyright))

	start := time.Now()
	inv, err := Scan(t.Context(), root)
	if err != nil {
		t.Fatalf("Scan() = %v", err)
	}
	t.Logf("Scan() of %d packages took %v", len(inv.Packages), time.Since(start))

	out := run(t, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W",
		"-f=${Package} ${Version} ${Architecture} ${db:Status-Status}\n")
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("dpkg-query line %q", l)
		}
		// config-files packages are removed: only conffiles remain, so
		// they are not in the image's SBOM.
		if f[3] != "config-files" {
			want = append(want, strings.Join(f[:3], " "))
		}
	}
	slices.Sort(want)
	if len(want) < 50 {
		t.Fatalf("dpkg-query listed only %d packages", len(want))
	}
	if diff := cmp.Diff(want, nevras(inv.Packages, TypeDeb)); diff != "" {
		t.Errorf("Scan() debs differ from dpkg-query (-want +got):\n%s", diff)
	}
	for _, p := range inv.Packages {
		if p.Name == "bash" && !strings.Contains(p.License, "GPL-3.0-or-later") {
			t.Errorf("bash: license %q, want it to include GPL-3.0-or-later", p.License)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScanConfined: symlinks in a hostile image must not make Scan read the
// host's files.
func TestScanConfined(t *testing.T) {
	t.Run("status symlink", func(t *testing.T) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "var/lib"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/var/lib/dpkg", filepath.Join(root, "var/lib/dpkg")); err != nil {
			t.Fatal(err)
		}
		inv, err := Scan(t.Context(), root)
		if err == nil {
			t.Fatalf("Scan() = %d packages through a symlink out of the root, want an error", len(inv.Packages))
		}
		if !strings.Contains(err.Error(), "var/lib/dpkg/status") {
			t.Errorf("Scan() = %v, want it to name var/lib/dpkg/status", err)
		}
	})
	t.Run("copyright symlink", func(t *testing.T) {
		root := t.TempDir()
		writeFile(t, filepath.Join(root, dpkgStatus), "Package: bash\nStatus: install ok installed\nVersion: 5\nArchitecture: amd64\n")
		if err := os.MkdirAll(filepath.Join(root, "usr/share/doc/bash"), 0o755); err != nil {
			t.Fatal(err)
		}
		// An absolute link and a relative one climbing out of the root.
		if err := os.Symlink("/usr/share/doc/bash/copyright", filepath.Join(root, "usr/share/doc/bash/copyright")); err != nil {
			t.Fatal(err)
		}
		inv, err := Scan(t.Context(), root)
		if err != nil {
			t.Fatal(err)
		}
		if len(inv.Packages) != 1 || inv.Packages[0].License != "" {
			t.Errorf("Scan() = %+v, want bash without a license (its copyright is outside the root)", inv.Packages)
		}
	})
}

func TestScanEmptyRoot(t *testing.T) {
	inv, err := Scan(t.Context(), t.TempDir())
	if err != nil || len(inv.Packages) != 0 {
		t.Fatalf("Scan(empty) = %+v, %v; want no packages and no error", inv, err)
	}
	if _, err := Scan(t.Context(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Scan(missing) = nil error")
	}
}

// testRPM builds a small rpm with rpmpack.
func testRPM(t *testing.T, dir, name, version, release string, epoch uint32, licence string) string {
	t.Helper()
	r, err := rpmpack.NewRPM(rpmpack.RPMMetaData{
		Name: name, Version: version, Release: release, Epoch: epoch, Arch: "noarch",
		Summary: "test", Description: "test", Licence: licence, Vendor: "imsbuild tests", URL: "https://example.org/" + name,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.AddFile(rpmpack.RPMFile{Name: "/usr/share/" + name + "/README", Body: []byte(name + "\n"), Mode: 0o100644, Owner: "root", Group: "root"})
	p := filepath.Join(dir, name+".rpm")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := r.Write(f); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestScanRPM installs rpms into a root with the real rpm (its sqlite
// database, rpm ≥ 4.16) and compares the package set with rpm -qa.
func TestScanRPM(t *testing.T) {
	testutil.RequireTool(t, "rpm")
	root, dir := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(root, "etc/os-release"), "ID=\"sles\"\nVERSION_ID=\"15.6\"\n")
	// Debian's rpm keeps its database in ~/.rpmdb; the image layout is
	// the distributions' /usr/lib/sysimage/rpm.
	db := []string{"--root", root, "--dbpath", "/usr/lib/sysimage/rpm"}
	run(t, "rpm", append(db, "--initdb")...)
	run(t, "rpm", append(db, "-i", "--nodeps", "--noscripts",
		testRPM(t, dir, "alpha", "1.2", "3.1", 0, "MIT"),
		testRPM(t, dir, "beta", "2.0", "1", 2, "GPLv2+"),
		testRPM(t, dir, "gamma", "0.9", "7", 0, "GPL-2.0-or-later AND BSD-3-Clause"))...)

	inv, err := Scan(t.Context(), root)
	if err != nil {
		t.Fatalf("Scan() = %v", err)
	}
	// rpm -qa includes no gpg-pubkey here (no keys were imported), and an
	// epoch of 0 is no epoch.
	out := run(t, "rpm", append(db, "-qa", "--qf", "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\n")...)
	want := strings.Split(strings.ReplaceAll(strings.TrimSpace(out), " 0:", " "), "\n")
	slices.Sort(want)
	if diff := cmp.Diff(want, nevras(inv.Packages, TypeRPM)); diff != "" {
		t.Errorf("Scan() rpms differ from rpm -qa (-want +got):\n%s", diff)
	}
	if inv.Distro != (Distro{ID: "sles", VersionID: "15.6"}) {
		t.Errorf("Distro = %+v", inv.Distro)
	}

	doc, err := inv.SPDX(Document{Name: "rpm-image", Tool: "imsbuild-test"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	for _, p := range doc.Packages[1:] {
		got[p.PackageName] = [2]string{p.PackageLicenseDeclared, p.PackageExternalReferences[0].Locator}
	}
	wantSPDX := map[string][2]string{
		"alpha": {"MIT", "pkg:rpm/sles/alpha@1.2-3.1?arch=noarch&distro=sles-15.6"},
		// Free-text licenses are not SPDX expressions.
		"beta":  {"NOASSERTION", "pkg:rpm/sles/beta@2.0-1?arch=noarch&distro=sles-15.6&epoch=2"},
		"gamma": {"GPL-2.0-or-later AND BSD-3-Clause", "pkg:rpm/sles/gamma@0.9-7?arch=noarch&distro=sles-15.6"},
	}
	if diff := cmp.Diff(wantSPDX, got); diff != "" {
		t.Errorf("SPDX packages (-want +got):\n%s", diff)
	}
}

// rpmdbFixture copies a database from go-rpmdb's own test data (in the
// module cache, downloaded with the module) into a new image root at path.
func rpmdbFixture(t *testing.T, fixture, path string) string {
	t.Helper()
	out := run(t, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/anchore/go-rpmdb")
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(out), "pkg/testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, path), string(data))
	return root
}

// TestScanRPMBerkeleyDB reads a CentOS 5 Berkeley DB database and compares
// it with the real rpm's read-only bdb backend.
func TestScanRPMBerkeleyDB(t *testing.T) {
	testutil.RequireTool(t, "rpm")
	root := rpmdbFixture(t, "centos5-plain/Packages", "var/lib/rpm/Packages")
	inv, err := Scan(t.Context(), root)
	if err != nil {
		t.Fatalf("Scan() = %v", err)
	}
	out := run(t, "rpm", "--define", "_db_backend bdb_ro", "--root", root, "--dbpath", "/var/lib/rpm", "-qa",
		"--qf", "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\n")
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "gpg-pubkey ") {
			want = append(want, strings.Replace(l, " 0:", " ", 1))
		}
	}
	slices.Sort(want)
	if len(want) < 50 {
		t.Fatalf("rpm -qa listed %d packages", len(want))
	}
	if diff := cmp.Diff(want, nevras(inv.Packages, TypeRPM)); diff != "" {
		t.Errorf("Scan() differs from rpm -qa (-want +got):\n%s", diff)
	}
}

// TestScanRPMNDB reads SUSE's ndb format (Debian's rpm cannot read it, so
// the check is that the well-known packages are there).
func TestScanRPMNDB(t *testing.T) {
	root := rpmdbFixture(t, "sle15-bci/Packages.db", "usr/lib/sysimage/rpm/Packages.db")
	inv, err := Scan(t.Context(), root)
	if err != nil {
		t.Fatalf("Scan() = %v", err)
	}
	names := map[string]bool{}
	for _, p := range inv.Packages {
		names[p.Name] = p.Type == TypeRPM && p.Version != "" && p.Arch != ""
	}
	for _, n := range []string{"bash", "glibc", "filesystem", "libzstd1"} {
		if !names[n] {
			t.Errorf("Scan() of the SLE 15 ndb database has no complete %s among %d packages", n, len(inv.Packages))
		}
	}
}

// TestScanRPMMalformed: a damaged database is an error, not a crash.
func TestScanRPMMalformed(t *testing.T) {
	for _, tc := range []struct{ name, path, data string }{
		{"sqlite header only", "usr/lib/sysimage/rpm/rpmdb.sqlite", "SQLite format 3\x00" + strings.Repeat("\xff", 200)},
		{"ndb garbage", "usr/lib/sysimage/rpm/Packages.db", "RpmP" + strings.Repeat("\x01", 300)},
		{"bdb garbage", "var/lib/rpm/Packages", strings.Repeat("\x00\x61\x15\x06", 1024)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, tc.path), tc.data)
			if inv, err := Scan(t.Context(), root); err == nil {
				t.Errorf("Scan() = %d packages, want an error", len(inv.Packages))
			} else if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("Scan() = %v, want it to name %s", err, tc.path)
			}
		})
	}
}

// TestScanSpecialFiles: FIFOs where files are expected must not hang the
// scan (a plain open of a FIFO waits for a writer forever).
func TestScanSpecialFiles(t *testing.T) {
	mkfifo := func(t *testing.T, path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(t *testing.T, root string) (*Inventory, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		type result struct {
			inv *Inventory
			err error
		}
		done := make(chan result, 1)
		go func() {
			inv, err := Scan(ctx, root)
			done <- result{inv, err}
		}()
		select {
		case r := <-done:
			return r.inv, r.err
		case <-ctx.Done():
			t.Fatal("Scan() hangs on a FIFO")
			return nil, nil
		}
	}
	t.Run("status", func(t *testing.T) {
		root := t.TempDir()
		mkfifo(t, filepath.Join(root, dpkgStatus))
		if _, err := scan(t, root); err == nil || !strings.HasSuffix(err.Error(), ": open var/lib/dpkg/status: not a regular file") {
			t.Errorf("Scan() = %v, want a not a regular file error", err)
		}
	})
	t.Run("rpmdb", func(t *testing.T) {
		root := t.TempDir()
		mkfifo(t, filepath.Join(root, "var/lib/rpm/rpmdb.sqlite"))
		if _, err := scan(t, root); err == nil || !strings.HasSuffix(err.Error(), ": open var/lib/rpm/rpmdb.sqlite: not a regular file") {
			t.Errorf("Scan() = %v, want a not a regular file error", err)
		}
	})
	t.Run("copyright and os-release", func(t *testing.T) {
		root := t.TempDir()
		writeFile(t, filepath.Join(root, dpkgStatus), "Package: bash\nStatus: install ok installed\nVersion: 5\nArchitecture: amd64\n")
		mkfifo(t, filepath.Join(root, "usr/share/doc/bash/copyright"))
		mkfifo(t, filepath.Join(root, "etc/os-release"))
		inv, err := scan(t, root)
		if err != nil || len(inv.Packages) != 1 || inv.Packages[0].License != "" || inv.Distro != (Distro{}) {
			t.Errorf("Scan() = %+v, %v; want bash without license or distro", inv, err)
		}
	})
}

func TestScanCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Scan(ctx, "/"); !errors.Is(err, context.Canceled) {
		t.Errorf("Scan(cancelled) = %v, want context.Canceled", err)
	}
}

// TestPathsCoverScan: every file Scan reads is under one of Paths, so a
// root holding only those scans the same (the engine unsquashes only them
// for an image reused as published).
func TestPathsCoverScan(t *testing.T) {
	reads := append([]string{dpkgStatus, docDir + "/bash/copyright", "etc/os-release", "usr/lib/os-release"}, rpmDBs...)
	for _, r := range reads {
		covered := false
		for _, p := range Paths() {
			if ok, _ := path.Match(p, r); ok || strings.HasPrefix(r, p+"/") {
				covered = true
			}
		}
		if !covered {
			t.Errorf("Scan reads %s, which no pattern of Paths() = %q covers", r, Paths())
		}
	}
}
