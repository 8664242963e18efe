package kiwi

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func writeDesc(t *testing.T, dir, xml string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files["config.xml"] = xml
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const familyXML = `<image schemaversion="7.5" name="n">
    <packages type="image">
        <package name="dracut"/>
        <package name="iproute2"/>%s
        <package name="vim" arch="x86_64"/>
    </packages>
    <packages type="image" profiles="big">
        <package name="less"/>
    </packages>
    <packages type="bootstrap">
        <package name="ca-certificates"/>
    </packages>
</image>
`

func TestDescriptionFamily(t *testing.T) {
	dir := t.TempDir()
	family := func(name, extra string, files map[string]string) *Family {
		d := filepath.Join(dir, name)
		writeDesc(t, d, fmt.Sprintf(familyXML, extra), files)
		f, err := DescriptionFamily(d)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a := family("a", "", map[string]string{"config.sh": "echo a\n"})
	if want := []string{"1:dracut", "1:iproute2", "2:less"}; !slices.Equal(a.Packages, want) {
		t.Errorf("packages = %v, want %v (vim has an attribute: part of the family)", a.Packages, want)
	}
	b := family("b", "\n        <package name=\"curl\"/>", map[string]string{"config.sh": "echo a\n"})
	if b.Digest != a.Digest || !slices.Contains(b.Packages, "1:curl") {
		t.Errorf("an added image package changed the family: %s vs %s, %v", a.Digest, b.Digest, b.Packages)
	}
	if c := family("c", "", map[string]string{"config.sh": "echo c\n"}); c.Digest == a.Digest {
		t.Error("a changed config.sh kept the family")
	}
	if d := family("d", "", map[string]string{"config.sh": "echo a\n", "images.sh": ""}); d.Digest == a.Digest {
		t.Error("an added file kept the family")
	}
	e := filepath.Join(dir, "e")
	writeDesc(t, e, fmt.Sprintf(familyXML, ""), map[string]string{"config.sh": "echo a\n"})
	if err := os.WriteFile(filepath.Join(e, "config.xml"), []byte(fmt.Sprintf(familyXML, "")+"<!-- -->"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := DescriptionFamily(e); err != nil || f.Digest == a.Digest {
		t.Errorf("another config.xml outside the image packages kept the family (%v)", err)
	}
}

func TestParseStatusAndAptActions(t *testing.T) {
	status := "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\n\n" +
		"Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n"
	got := parseStatus([]byte(status))
	if len(got) != 1 || got["libc6:amd64"] != (SimPackage{"libc6", "2.36-9", "amd64"}) {
		t.Errorf("parseStatus = %v", got)
	}
	for line, want := range map[string][]string{
		"Inst less (590-2.1~deb12u2 Debian:12.8/stable [amd64])":             {"Inst", "less", "", "590-2.1~deb12u2", "amd64"},
		"Inst libc6 [2.36-9] (2.36-9+deb12u9 Debian:12.8/stable [amd64]) []": {"Inst", "libc6", "2.36-9", "2.36-9+deb12u9", "amd64"},
		"Inst python3:amd64 (3.11.2-1+b1 Debian:12.8/stable [amd64])":        {"Inst", "python3:amd64", "", "3.11.2-1+b1", "amd64"},
		"Remv usrmerge [37~deb12u1]":                                         {"Remv", "usrmerge", "37~deb12u1", "", ""},
	} {
		m := aptActionRE.FindStringSubmatch(line)
		if m == nil || !slices.Equal(m[1:], want) {
			t.Errorf("%q: %q, want %q", line, m, want)
		}
	}
}

func TestCheckSimulate(t *testing.T) {
	dir := t.TempDir()
	repo := `<repository type="apt-deb" distribution="bookworm" components="main" repository_gpgcheck="false"><source path="http://deb.example/debian"/></repository>`
	ok := filepath.Join(dir, "ok")
	writeDesc(t, ok, `<image><preferences><packagemanager>apt</packagemanager></preferences>`+repo+
		`<packages type="image"><package name="less"/></packages></image>`, map[string]string{})
	if err := CheckSimulate(ok, nil, "x86_64"); err != nil {
		t.Errorf("CheckSimulate(apt description) = %v", err)
	}
	del := filepath.Join(dir, "delete")
	writeDesc(t, del, `<image><preferences><packagemanager>apt</packagemanager></preferences>`+repo+
		`<packages type="image"><package name="less"/></packages><packages type="delete"><package name="vim"/></packages></image>`, map[string]string{})
	if err := CheckSimulate(del, nil, "x86_64"); err == nil {
		t.Error("CheckSimulate accepted a description that deletes packages (the model does not follow kiwi's delete)")
	}
	if err := CheckSimulate(ok, nil, "ppc64le"); err == nil {
		t.Error("CheckSimulate accepted an arch it has no dpkg name for")
	}
}
