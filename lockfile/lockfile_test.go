package lockfile

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sumA = "0e5d0c3b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f"
const sumB = "1111111111111111111111111111111111111111111111111111111111111111"

func sample() *File {
	return &File{Version: Version, Recipes: map[string]*Recipe{
		"node": {
			Repositories: map[string]string{"local": "sha256:" + sumB, "debian": "sha256:" + sumA},
			Packages: []Package{
				{Name: "base-files", Version: "12.4+deb12u5", Arch: "amd64", SHA256: sumA, Path: "/debian/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb"},
				{Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64"},
				{Name: "libcap2-bin", Version: "1:2.66-4", Arch: "amd64", SHA256: sumB, Path: "/pool/libcap2-bin_2.66-4_amd64.deb"},
			},
		},
		"empty": {},
	}}
}

const sampleText = `{
  "version": 1,
  "recipes": {
    "empty": {
      "repositories": {},
      "packages": []
    },
    "node": {
      "repositories": {
        "debian": "sha256:0e5d0c3b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f",
        "local": "sha256:1111111111111111111111111111111111111111111111111111111111111111"
      },
      "packages": [
        {"name": "base-files", "version": "12.4+deb12u5", "arch": "amd64", "sha256": "0e5d0c3b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f", "path": "/debian/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb"},
        {"name": "libc6", "version": "2.36-9+deb12u4", "arch": "amd64"},
        {"name": "libcap2-bin", "version": "1:2.66-4", "arch": "amd64", "sha256": "1111111111111111111111111111111111111111111111111111111111111111", "path": "/pool/libcap2-bin_2.66-4_amd64.deb"}
      ]
    }
  }
}
`

func TestEncodeParse(t *testing.T) {
	got := string(sample().Encode())
	if got != sampleText {
		t.Fatalf("Encode() =\n%s\nwant\n%s", got, sampleText)
	}
	f, err := Parse([]byte(got))
	if err != nil {
		t.Fatalf("Parse(Encode()) = %v", err)
	}
	if again := string(f.Encode()); again != got {
		t.Errorf("Encode(Parse(x)) != x:\n%s", again)
	}
	want := sample()
	want.Recipes["empty"] = &Recipe{Repositories: map[string]string{}, Packages: []Package{}}
	if d := cmp.Diff(want, f); d != "" {
		t.Errorf("Parse() diff (-want +got):\n%s", d)
	}
	if (&File{Version: Version}).Encode() == nil {
		t.Error("Encode of an empty lock is nil")
	}
	if _, err := Parse((&File{Version: Version}).Encode()); err != nil {
		t.Errorf("Parse of an empty lock = %v", err)
	}
}

func TestDigest(t *testing.T) {
	a, b := sample().Recipes["node"], sample().Recipes["node"]
	if a.Digest() != b.Digest() {
		t.Fatal("Digest differs for equal recipes")
	}
	b.Packages[1].Version = "2.36-9+deb12u5"
	if a.Digest() == b.Digest() {
		t.Error("Digest ignores a package version")
	}
	c := sample().Recipes["node"]
	c.Repositories["debian"] = "sha256:" + sumB
	if a.Digest() == c.Digest() {
		t.Error("Digest ignores a repository digest")
	}
}

func TestParseRejects(t *testing.T) {
	valid := sampleText
	for _, tc := range []struct {
		name, text, want string
	}{
		{"not json", "{", "unexpected EOF"},
		{"trailing", valid + "{}", "data after the JSON object"},
		{"unknown field", strings.Replace(valid, `"version": 1,`, `"version": 1, "extra": 2,`, 1), "unknown field"},
		{"version", strings.Replace(valid, `"version": 1`, `"version": 2`, 1), "version 2, want 1"},
		{"recipe name", strings.Replace(valid, `"node": {`, `"no/de": {`, 1), `recipe "no/de": not a recipe name`},
		{"null recipe", strings.Replace(valid, `"empty": {
      "repositories": {},
      "packages": []
    }`, `"empty": null`, 1), "recipe empty: null"},
		{"repo digest", strings.Replace(valid, `"sha256:0e5d`, `"md5:0e5d`, 1), "repository debian: digest"},
		{"name", strings.Replace(valid, `"name": "libc6"`, `"name": "lib c6"`, 1), `name "lib c6"`},
		{"name start", strings.Replace(valid, `"name": "libc6"`, `"name": "-libc6"`, 1), `name "-libc6"`},
		{"version", strings.Replace(valid, `"2.36-9+deb12u4"`, `"2.36\n"`, 1), `version "2.36\n"`},
		{"empty version", strings.Replace(valid, `"2.36-9+deb12u4"`, `""`, 1), `version ""`},
		{"arch", strings.Replace(valid, `"arch": "amd64"}`, `"arch": "amd/64"}`, 1), `arch "amd/64"`},
		{"sha256", strings.Replace(valid, `"sha256": "0e5d`, `"sha256": "0E5D`, 1), "sha256"},
		{"path dotdot", strings.Replace(valid, `/debian/pool/main`, `/debian/../main`, 1), "path"},
		{"path relative", strings.Replace(valid, `"/pool/libcap2`, `"pool/libcap2`, 1), "path"},
		{"unsorted", strings.Replace(valid, `"name": "libc6"`, `"name": "zlib"`, 1), "not sorted"},
		{"duplicate", strings.Replace(valid, `"name": "libc6"`, `"name": "base-files"`, 1), "listed twice"},
		{"too big", `{"version":1,"recipes":{}}` + strings.Repeat(" ", MaxFileSize), "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	locked := &Recipe{Packages: []Package{
		{Name: "a", Version: "1.0", Arch: "all", SHA256: sumA},
		{Name: "b", Version: "1.0", Arch: "amd64", SHA256: sumA},
		{Name: "c", Version: "1.0", Arch: "amd64"},
		{Name: "gone", Version: "3", Arch: "amd64"},
	}}
	if d := Diff(locked, locked); d != nil {
		t.Fatalf("Diff(x, x) = %v, want nil", d)
	}
	got := &Recipe{Packages: []Package{
		{Name: "a", Version: "2.0", Arch: "all", SHA256: sumB},
		{Name: "b", Version: "1.0", Arch: "amd64", SHA256: sumB},
		{Name: "c", Version: "1.0", Arch: "amd64", SHA256: sumB}, // unknown locked digest: not a difference
		{Name: "new", Version: "1", Arch: "amd64"},
	}}
	want := []string{
		"package a: locked 1.0 (sha256 0e5d0c3b1c2d…), repository now resolves 2.0 (sha256 111111111111…)",
		"package b 1.0: locked sha256 " + sumA + ", repository now serves sha256 " + sumB,
		"package new: not in the lock, repository now resolves 1",
		"package gone: locked 3, no longer installed",
	}
	if d := cmp.Diff(want, Diff(locked, got)); d != "" {
		t.Errorf("Diff() (-want +got):\n%s", d)
	}
}

func TestParseFileName(t *testing.T) {
	for _, tc := range []struct {
		path, name, version, arch string
		ok                        bool
	}{
		{"/debian/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb", "base-files", "12.4+deb12u5", "amd64", true},
		{"/archives/libcap2-bin_1%3a2.66-4_amd64.deb", "libcap2-bin", "2.66-4", "amd64", true},
		{"/x/di_1.0_all.udeb", "di", "1.0", "all", true},
		{"/repo/x86_64/bash-5.2.15-3.fc38.x86_64.rpm", "bash", "5.2.15-3.fc38", "x86_64", true},
		{"/repo/python3-libs-3.11.4-1.el9.noarch.rpm", "python3-libs", "3.11.4-1.el9", "noarch", true},
		{"/x/a_b.deb", "", "", "", false},
		{"/x/a__c.deb", "", "", "", false},
		{"/x/bash.x86_64.rpm", "", "", "", false},
		{"/x/bash-1-.x86_64.rpm", "", "", "", false},
		{"/x/Packages.gz", "", "", "", false},
	} {
		n, v, a, ok := ParseFileName(tc.path)
		if n != tc.name || v != tc.version || a != tc.arch || ok != tc.ok {
			t.Errorf("ParseFileName(%q) = %q, %q, %q, %v; want %q, %q, %q, %v", tc.path, n, v, a, ok, tc.name, tc.version, tc.arch, tc.ok)
		}
	}
}

func TestCheckFile(t *testing.T) {
	r := sample().Recipes["node"]
	for _, tc := range []struct {
		path, sha, want string
	}{
		{"/m/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb", "", ""},
		{"/m/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb", sumA, ""},
		{"/pool/libcap2-bin_2.66-4_amd64.deb", sumB, ""}, // epoch not in file names
		{"/m/libc6_2.36-9+deb12u4_amd64.deb", sumB, ""},  // no locked digest
		{"/m/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb", sumB, "package base-files 12.4+deb12u5: locked sha256 " + sumA + ", repository now serves sha256 " + sumB},
		{"/m/base-files_12.5_amd64.deb", "", "package base-files: locked 12.4+deb12u5 (sha256 0e5d0c3b1c2d…), repository now resolves 12.5"},
		{"/m/base-files_12.4+deb12u5_arm64.deb", "", "package base-files: locked 12.4+deb12u5 (sha256 0e5d0c3b1c2d…), repository now resolves 12.4+deb12u5"},
		{"/m/vim_9.0_amd64.deb", "", "package vim: not in the lock, repository now resolves 9.0"},
		{"/m/weird.deb", "", "not in the lock (not a package file name)"},
	} {
		err := r.CheckFile(tc.path, tc.sha)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckFile(%q, %q) = %v, want %q", tc.path, tc.sha, err, tc.want)
		}
	}
}

// FuzzParse: Parse never panics, and what it accepts encodes to a file it
// accepts again, unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleText))
	f.Add([]byte(`{"version":1,"recipes":{"a":{"repositories":null,"packages":null}}}`))
	f.Add([]byte(`{"version":1,"recipes":{"a":{"packages":[{"name":"x","version":"1","arch":"all","path":"/%2e%2e/x"}]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lf, err := Parse(data)
		if err != nil {
			return
		}
		enc := lf.Encode()
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Encode(Parse(x))) = %v\n%s", err, enc)
		}
		if !bytes.Equal(again.Encode(), enc) {
			t.Fatalf("Encode is not stable:\n%s\n%s", enc, again.Encode())
		}
	})
}

func TestCarry(t *testing.T) {
	old := &Recipe{Packages: []Package{
		{Name: "a", Version: "1", Arch: "all", SHA256: sumA, Path: "/p/a_1_all.deb"},
		{Name: "b", Version: "1", Arch: "all", SHA256: sumA, Path: "/p/b_1_all.deb"},
		{Name: "c", Version: "1", Arch: "all", SHA256: sumA, Path: "/p/c_1_all.deb"},
	}}
	got := &Recipe{Repositories: map[string]string{"r": "sha256:" + sumB}, Packages: []Package{
		{Name: "a", Version: "1", Arch: "all", SHA256: sumA}, // from the package cache: same digest, no path
		{Name: "b", Version: "2", Arch: "all"},               // another version: nothing carried
		{Name: "c", Version: "1", Arch: "all", SHA256: sumB}, // another digest: nothing carried
		{Name: "d", Version: "1", Arch: "all"},
	}}
	want := &Recipe{Repositories: got.Repositories, Packages: []Package{
		{Name: "a", Version: "1", Arch: "all", SHA256: sumA, Path: "/p/a_1_all.deb"},
		{Name: "b", Version: "2", Arch: "all"},
		{Name: "c", Version: "1", Arch: "all", SHA256: sumB},
		{Name: "d", Version: "1", Arch: "all"},
	}}
	if d := cmp.Diff(want, Carry(old, got)); d != "" {
		t.Errorf("Carry() (-want +got):\n%s", d)
	}
	if Carry(nil, got) != got {
		t.Error("Carry(nil, got) != got")
	}
}
