package sbom

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const statusOK = `Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Homepage: https://www.gnu.org/software/libc/libc.html
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 More text.

Package: removed-pkg
Status: deinstall ok config-files
Version: 1.0
Architecture: all

Package: purged
Status: purge ok not-installed
Architecture: all

package: lower-case
status: install ok unpacked
version: 1:2.0~rc1-3
architecture: arm64
Conffiles:
 /etc/x 0123456789abcdef0123456789abcdef
`

func TestParseDpkgStatus(t *testing.T) {
	got, err := ParseDpkgStatus(strings.NewReader(statusOK))
	if err != nil {
		t.Fatalf("ParseDpkgStatus() = %v", err)
	}
	want := []Package{
		{Type: TypeDeb, Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64", Source: "glibc",
			Maintainer: "GNU Libc Maintainers <debian-glibc@lists.debian.org>", Homepage: "https://www.gnu.org/software/libc/libc.html"},
		{Type: TypeDeb, Name: "lower-case", Version: "1:2.0~rc1-3", Arch: "arm64"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseDpkgStatus() mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDpkgStatusErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no package", "Status: install ok installed\n", "line 1: paragraph without Package"},
		{"duplicate field", "Package: aa\nPackage: bb\n", "line 2: duplicate field Package"},
		{"duplicate ignored field", "Package: aa\nDescription: x\ndescription: y\n", "line 3: duplicate field description"},
		{"not a field", "Package: aa\nrandom text\n", "line 2: not a field"},
		{"empty field name", ": value\n", "line 1: not a field"},
		{"continuation first", " leading continuation\n", "line 1: continuation line outside a field"},
		{"continuation after blank", "Package: aa\nStatus: install ok installed\n\n more\n", "line 4: continuation line outside a field"},
		{"bad status", "Package: aa\nStatus: installed\n", "package aa: invalid Status"},
		{"unknown state", "Package: aa\nStatus: install ok exploded\n", "unknown status"},
		{"path in name", "Package: ../../etc\nStatus: install ok installed\n", "invalid package name"},
		{"upper-case name", "Package: Bash\nStatus: install ok installed\n", "invalid package name"},
		{"line too long", "Package: aa\nDescription: " + strings.Repeat("x", maxLine) + "\n", "line 2: bufio.Scanner: token too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDpkgStatus(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseDpkgStatus() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseDpkgStatusControlCharacters(t *testing.T) {
	in := "Package: aa\nStatus: install ok installed\nVersion: 1.0\x1b[31m\r\nMaintainer: Eve\x00 <e@x>\n"
	got, err := ParseDpkgStatus(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Version != "1.0[31m" || got[0].Maintainer != "Eve <e@x>" {
		t.Errorf("ParseDpkgStatus() = %+v, want control characters dropped", got)
	}
}

// FuzzParseDpkgStatus feeds hostile status files: the parser must not panic
// and must only return packages with a valid name and single-line fields.
func FuzzParseDpkgStatus(f *testing.F) {
	f.Add(statusOK)
	f.Add("Package: a\n\n\n \n")
	f.Add("Package: aa\nStatus: install ok installed\nVersion: 1\n continued\n")
	f.Add("Package:aa\r\nStatus:install ok installed\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		pkgs, err := ParseDpkgStatus(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if !validDebName(p.Name) {
				t.Errorf("invalid name %q accepted", p.Name)
			}
			for _, v := range []string{p.Version, p.Arch, p.Source, p.Maintainer, p.Homepage} {
				if strings.ContainsAny(v, "\n\r\x00") {
					t.Errorf("field %q of %s has a control character", v, p.Name)
				}
			}
		}
	})
}
