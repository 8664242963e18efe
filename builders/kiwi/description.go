package kiwi

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
)

// DescriptionFile returns the kiwi description file of descDir, as kiwi-ng
// finds it: config.xml, else the single *.kiwi file.
func DescriptionFile(descDir string) (string, error) {
	p := filepath.Join(descDir, "config.xml")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	matches, err := filepath.Glob(filepath.Join(descDir, "*.kiwi"))
	if err != nil {
		return "", err
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("kiwi description %s: no config.xml or *.kiwi file", descDir)
	case 1:
		return matches[0], nil
	}
	return "", fmt.Errorf("kiwi description %s: %d *.kiwi files and no config.xml", descDir, len(matches))
}

// description is the part of a kiwi description imsbuild reads.
type description struct {
	PackageManagers []string `xml:"preferences>packagemanager"`
	Repositories    []struct {
		Type   string `xml:"type,attr"`
		Source struct {
			Path string `xml:"path,attr"`
		} `xml:"source"`
	} `xml:"repository"`
}

func readDescription(descDir string) (*description, string, error) {
	file, err := DescriptionFile(descDir)
	if err != nil {
		return nil, "", err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	var d description
	if err := xml.NewDecoder(f).Decode(&d); err != nil {
		return nil, "", fmt.Errorf("parse %s: %w", file, err)
	}
	return &d, file, nil
}

// Repositories lists the source paths of the repositories the description
// in descDir declares (<repository><source path="…"/>), in order, for
// waiting. Render the description first: placeholders are not expanded.
func Repositories(descDir string) ([]string, error) {
	d, _, err := readDescription(descDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range d.Repositories {
		if r.Source.Path != "" {
			out = append(out, r.Source.Path)
		}
	}
	return out, nil
}

// isRPM reports whether the description installs RPMs: an rpm package
// manager (zypper, dnf, dnf4, dnf5, microdnf, yum) or rpm-md repositories.
func (d *description) isRPM() bool {
	for _, pm := range d.PackageManagers {
		switch pm {
		case "zypper", "dnf", "dnf4", "dnf5", "microdnf", "yum":
			return true
		}
	}
	for _, r := range d.Repositories {
		if r.Type == "rpm-md" || r.Type == "rpm-dir" || r.Type == "apt-rpm" {
			return true
		}
	}
	return false
}
