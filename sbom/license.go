package sbom

import (
	"bytes"
	"io"
	"os"
	"slices"
	"strings"
)

// maxCopyright bounds how much of one copyright file is read: the largest in
// Debian are a few hundred KiB, and a hostile image must not make the SBOM
// read gigabytes.
const maxCopyright = 1 << 20

// copyrightFormat starts every machine-readable debian/copyright file
// (DEP-5); other files are free text and give no license.
var copyrightFormat = []byte("Format:")

// debLicense returns the SPDX expression of a machine-readable
// <name>/copyright file in doc (the image's usr/share/doc), or "" when there
// is none or it is not machine-readable. buf and memo (License values to
// expressions) are reused between calls.
func debLicense(doc *os.Root, name string, buf *[]byte, memo map[string]string) string {
	f, err := openRegular(doc, name+"/copyright")
	if err != nil {
		return ""
	}
	defer f.Close()
	b := (*buf)[:0]
	for len(b) < maxCopyright {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):min(cap(b), maxCopyright)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return ""
		}
	}
	*buf = b
	return parseCopyright(b, memo)
}

// parseCopyright returns the SPDX expression for the License fields of a
// DEP-5 copyright file: the AND of their distinct expressions, sorted.
func parseCopyright(b []byte, memo map[string]string) string {
	if !bytes.HasPrefix(b, copyrightFormat) {
		return ""
	}
	var terms []string
	for {
		i := bytes.Index(b, licenseField)
		if i < 0 {
			break
		}
		b = b[i+len(licenseField):]
		line := b
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			line = b[:j]
		}
		v := bytes.TrimSpace(line)
		expr, ok := memo[string(v)] // no allocation on a hit
		if !ok {
			expr = spdxOf(string(v))
			memo[string(v)] = expr
		}
		if expr != "" && !slices.Contains(terms, expr) {
			terms = append(terms, expr)
		}
	}
	if len(terms) == 0 {
		return ""
	}
	slices.Sort(terms)
	if len(terms) == 1 {
		return terms[0]
	}
	for i, t := range terms {
		if strings.Contains(t, " OR ") {
			terms[i] = "(" + t + ")"
		}
	}
	return strings.Join(terms, " AND ")
}

var licenseField = []byte("\nLicense:")

// spdxOf maps the value of a DEP-5 License field ("GPL-2+ or Artistic",
// "BSL-1.0 and MIT") to an SPDX expression. A name without an SPDX
// identifier in debianSPDX ("permissive", "GPL-2+ with OpenSSL exception")
// becomes LicenseRef-Debian-<name>: declared, but not mistaken for a listed
// license.
func spdxOf(s string) string {
	var alts []string
	for _, a := range strings.Split(strings.ToLower(s), " or ") {
		var all []string
		for _, n := range strings.Split(a, " and ") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			id, ok := debianSPDX[n]
			if !ok {
				id = licenseRef(n)
			}
			if !slices.Contains(all, id) {
				all = append(all, id)
			}
		}
		if len(all) == 0 {
			continue
		}
		slices.Sort(all)
		e := strings.Join(all, " AND ")
		if !slices.Contains(alts, e) {
			alts = append(alts, e)
		}
	}
	slices.Sort(alts)
	if len(alts) > 1 {
		for i, a := range alts {
			if strings.Contains(a, " AND ") {
				alts[i] = "(" + a + ")"
			}
		}
	}
	return strings.Join(alts, " OR ")
}

// licenseRef makes a LicenseRef identifier (idstring: letters, digits, "."
// and "-") of a license name.
func licenseRef(name string) string {
	var b strings.Builder
	b.WriteString(licenseRefPrefix)
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		case r == '+':
			b.WriteString("-plus")
		default:
			b.WriteByte('-')
		}
		if b.Len() > 128 {
			break
		}
	}
	return b.String()
}

const licenseRefPrefix = "LicenseRef-Debian-"

// debianSPDX maps the DEP-5 short names seen in Debian (lowercased) to SPDX
// license identifiers. Names with exceptions ("GPL-2+ with OpenSSL
// exception") and custom names ("public-domain", "permissive") are absent on
// purpose: they have no single SPDX identifier, and the SBOM says
// NOASSERTION rather than guess.
var debianSPDX = map[string]string{
	"apache-2.0":       "Apache-2.0",
	"artistic":         "Artistic-1.0-Perl",
	"artistic-1.0":     "Artistic-1.0",
	"artistic-2.0":     "Artistic-2.0",
	"bsd-2-clause":     "BSD-2-Clause",
	"bsd-3-clause":     "BSD-3-Clause",
	"bsd-4-clause":     "BSD-4-Clause",
	"bsl-1.0":          "BSL-1.0",
	"cc0-1.0":          "CC0-1.0",
	"expat":            "MIT",
	"mit":              "MIT",
	"gfdl-1.2+":        "GFDL-1.2-or-later",
	"gfdl-1.3+":        "GFDL-1.3-or-later",
	"gpl-1+":           "GPL-1.0-or-later",
	"gpl-2":            "GPL-2.0-only",
	"gpl-2.0":          "GPL-2.0-only",
	"gpl-2+":           "GPL-2.0-or-later",
	"gpl-2.0+":         "GPL-2.0-or-later",
	"gpl-3":            "GPL-3.0-only",
	"gpl-3.0":          "GPL-3.0-only",
	"gpl-3+":           "GPL-3.0-or-later",
	"gpl-3.0+":         "GPL-3.0-or-later",
	"isc":              "ISC",
	"lgpl-2":           "LGPL-2.0-only",
	"lgpl-2+":          "LGPL-2.0-or-later",
	"lgpl-2.1":         "LGPL-2.1-only",
	"lgpl-2.1+":        "LGPL-2.1-or-later",
	"lgpl-3":           "LGPL-3.0-only",
	"lgpl-3+":          "LGPL-3.0-or-later",
	"lgpl-3.0":         "LGPL-3.0-only",
	"lgpl-3.0+":        "LGPL-3.0-or-later",
	"mpl-1.1":          "MPL-1.1",
	"mpl-2.0":          "MPL-2.0",
	"openssl":          "OpenSSL",
	"psf-2":            "PSF-2.0",
	"python-2.0":       "Python-2.0",
	"unicode-dfs-2016": "Unicode-DFS-2016",
	"zlib":             "Zlib",
	"curl":             "curl",
	"x11":              "X11",
	"ofl-1.1":          "OFL-1.1",
}
