package kiwi

import (
	"archive/tar"
	"io"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"github.com/klauspost/compress/gzip"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA returns a self-signed CA certificate as PEM.
func testCA(t *testing.T, cn string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

const aptXML = `<image schemaversion="7.5" name="x"><preferences><packagemanager>apt</packagemanager></preferences>
<repository type="apt-deb" distribution="bookworm"><source path="http://deb.debian.org/debian"/></repository></image>`

func TestInjectCACerts(t *testing.T) {
	ca1, ca2 := testCA(t, "site one"), strings.TrimSuffix(testCA(t, "site two"), "\n")
	tests := []struct {
		name      string
		configSh  string // "" = no config.sh
		wantStart string
	}{
		{"creates config.sh", "", "#!/bin/bash\n"},
		{"appends to config.sh", "#!/bin/bash\necho configured", "#!/bin/bash\necho configured\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mustWrite(t, filepath.Join(dir, "config.xml"), aptXML, 0o644)
			sh := filepath.Join(dir, "config.sh")
			if tc.configSh != "" {
				mustWrite(t, sh, tc.configSh, 0o755)
			}
			if err := InjectCACerts(dir, []string{ca1, ca2}); err != nil {
				t.Fatalf("InjectCACerts() = %v", err)
			}
			files := readTarGz(t, filepath.Join(dir, "imsbuild-ca.tar.gz"))
			for i, want := range []string{ca1, ca2 + "\n"} {
				name := []string{"usr/local/share/ca-certificates/imsbuild-1.crt", "usr/local/share/ca-certificates/imsbuild-2.crt"}[i]
				if files[name] != want {
					t.Errorf("archive %s = %q, want %q", name, files[name], want)
				}
			}
			bundle := files["usr/local/share/imsbuild/build-ca-bundle.crt"]
			if !strings.Contains(bundle, ca1) || !strings.Contains(bundle, ca2) {
				t.Errorf("build bundle lacks the site CAs")
			}
			if conf := files["etc/apt/apt.conf.d/99imsbuild-build-ca"]; !strings.Contains(conf, `Acquire::https::CAInfo "/usr/local/share/imsbuild/build-ca-bundle.crt";`) {
				t.Errorf("apt conf = %q", conf)
			}
			xml, _ := os.ReadFile(filepath.Join(dir, "config.xml"))
			if !strings.Contains(string(xml), `<packages type="bootstrap">`) || !strings.Contains(string(xml), `<archive name="imsbuild-ca.tar.gz"/>`) {
				t.Errorf("config.xml does not list the bootstrap archive:\n%s", xml)
			}
			if err := InjectCACerts(dir, []string{ca1, ca2}); err != nil {
				t.Fatal(err)
			}
			if xml2, _ := os.ReadFile(filepath.Join(dir, "config.xml")); strings.Count(string(xml2), "imsbuild-ca.tar.gz") != 1 {
				t.Errorf("a second injection listed the archive twice")
			}
			got, err := os.ReadFile(sh)
			if err != nil {
				t.Fatal(err)
			}
			s := string(got)
			if !strings.HasPrefix(s, tc.wantStart) || !strings.Contains(s, "command -v update-ca-certificates") ||
				!strings.Contains(s, "\n    update-ca-certificates\n") || !strings.Contains(s, "rm -f /etc/apt/apt.conf.d/99imsbuild-build-ca") {
				t.Errorf("config.sh =\n%s", s)
			}
			if fi, _ := os.Stat(sh); fi.Mode().Perm()&0o100 == 0 {
				t.Errorf("config.sh mode = %v, want executable", fi.Mode())
			}
		})
	}
}

func TestInjectCACertsErrors(t *testing.T) {
	tests := []struct {
		name, xml string
		pems      []string
		want      error
		wantText  string
	}{
		{"not a certificate", aptXML, []string{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, nil, "no PEM CERTIFICATE block"},
		{"garbage", aptXML, []string{"hello"}, nil, "inject ca certificate 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mustWrite(t, filepath.Join(dir, "config.xml"), tc.xml, 0o644)
			err := InjectCACerts(dir, tc.pems)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("InjectCACerts() = %v, want %v containing %q", err, tc.want, tc.wantText)
			}
			if _, err := os.Stat(filepath.Join(dir, "root")); err == nil {
				t.Error("root/ overlay written despite the error")
			}
		})
	}
}

func TestInjectCACertsNone(t *testing.T) {
	dir := t.TempDir()
	if err := InjectCACerts(dir, nil); err != nil {
		t.Fatalf("InjectCACerts(nil) = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("InjectCACerts(nil) wrote %v", entries)
	}
}

// readTarGz returns the regular files of a .tar.gz by name.
func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
	}
}
