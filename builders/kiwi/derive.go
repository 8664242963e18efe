package kiwi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Deriving a prepared root (see steps.Prepare): a recipe that differs
// from one prepared before only by added image packages starts kiwi from
// that recipe's prepared root. What the two must share is the
// description's "family": every file of the rendered description, with
// config.xml's image packages taken out.

// imagePackageRE matches one image package as recipes list it: a
// self-closing <package name="…"/> with no other attribute. One with
// attributes (arch, bootinclude, …) is not taken out: it stays part of
// the family, so changing it rules derivation out.
var imagePackageRE = regexp.MustCompile(`(?m)^[ \t]*<package name="([a-z0-9][a-z0-9+.-]*)"\s*/>[ \t]*\r?\n?`)

// packagesSectionRE matches a <packages …> section of type image.
var packagesSectionRE = regexp.MustCompile(`(?s)<packages\s[^>]*type="image"[^>]*>.*?</packages>`)

// Family describes a rendered description for derivation: Digest covers
// every file of the description with config.xml's image packages taken
// out; Packages are those packages as "<section>:<name>", sorted (the
// section's number among the image sections, so packages of different
// profile sections never match each other).
type Family struct {
	Digest   string
	Packages []string
}

// DescriptionFamily returns the Family of the rendered description in
// descDir. Symlinks are digested by their target, other special files
// refuse (a description holds files and directories).
func DescriptionFamily(descDir string) (*Family, error) {
	file, err := DescriptionFile(descDir)
	if err != nil {
		return nil, err
	}
	x, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	f := &Family{}
	section := 0
	stripped := packagesSectionRE.ReplaceAllStringFunc(string(x), func(s string) string {
		section++
		for _, m := range imagePackageRE.FindAllStringSubmatch(s, -1) {
			f.Packages = append(f.Packages, fmt.Sprintf("%d:%s", section, m[1]))
		}
		return imagePackageRE.ReplaceAllString(s, "")
	})
	slices.Sort(f.Packages)
	f.Packages = slices.Compact(f.Packages)
	h := sha256.New()
	err = filepath.WalkDir(descDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(descDir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %o\n", rel, info.Mode())
		switch {
		case d.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %q\n", t)
		case info.Mode().IsRegular():
			if p == file {
				fmt.Fprintf(h, "%d\n%s", len(stripped), stripped)
				return nil
			}
			r, err := os.Open(p)
			if err != nil {
				return err
			}
			defer r.Close()
			fmt.Fprintf(h, "%d\n", info.Size())
			if _, err := io.Copy(h, r); err != nil {
				return err
			}
		default:
			return fmt.Errorf("description family: %s is no file, directory or symlink", rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return f, nil
}

// PackageName returns the package name of a Family package.
func PackageName(p string) string {
	_, name, _ := strings.Cut(p, ":")
	return name
}

// SimPackage is a package of a simulated installation.
type SimPackage struct {
	Name, Version, Arch string
}

// aptActionRE matches apt-get --simulate's "Inst name [old] (version
// release [arch])" and "Remv name [version]" lines.
var aptActionRE = regexp.MustCompile(`^(Inst|Remv) (\S+)(?: \[(\S+)\])?(?: \((\S+) .*\[(\S+)\]\))?`)

// SimulateApt returns the packages a fresh prepare of the rendered apt
// description in descDir installs for profiles and arch (x86_64, aarch64),
// as the host's apt-get resolves them in a scratch apt (dir, created; see
// ResolveApt) whose dpkg status is status, the bootstrap root's
// (PrepareOptions.BootstrapStatus): what kiwi's apt-get install of the
// image packages adds to the bootstrap root. It answers for each of
// drops, the image packages whose names are in a drop map being left out.
// It is a model (post_bootstrap.sh, for one, is not in it): callers check
// it against a prepare that really ran before trusting it.
func SimulateApt(ctx context.Context, descDir string, profiles []string, arch, proxy, dir string, status []byte, drops ...map[string]bool) ([][]SimPackage, error) {
	in, err := simulateInputs(descDir, profiles, arch)
	if err != nil {
		return nil, err
	}
	apt, err := newScratchApt(dir, in.sources, in.arch, proxy, in.recommends)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), status, 0o644); err != nil {
		return nil, err
	}
	installed := parseStatus(status)
	if len(installed) == 0 {
		return nil, errors.New("simulate: the bootstrap status lists no installed package")
	}
	if _, err := apt.run(ctx, "update"); err != nil {
		return nil, err
	}
	var out [][]SimPackage
	for _, drop := range drops {
		args := []string{"install", "--simulate", "-y"}
		for _, p := range in.image {
			if !drop[p] {
				args = append(args, p)
			}
		}
		b, err := apt.run(ctx, args...)
		if err != nil {
			return nil, err
		}
		set := map[string]SimPackage{}
		for k, p := range installed {
			set[k] = p
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			m := aptActionRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			name, _, _ := strings.Cut(m[2], ":") // name:arch for multi-arch
			switch {
			case m[1] == "Remv":
				for k, p := range set {
					if p.Name == name {
						delete(set, k)
					}
				}
			case m[4] != "":
				p := SimPackage{Name: name, Version: m[4], Arch: m[5]}
				set[p.Name+":"+p.Arch] = p
			default:
				return nil, fmt.Errorf("simulate: apt-get says %q", line)
			}
		}
		list := make([]SimPackage, 0, len(set))
		for _, p := range set {
			list = append(list, p)
		}
		out = append(out, list)
	}
	return out, nil
}

// simulation is what SimulateApt reads of a description.
type simulation struct {
	sources, arch string
	image         []string
	recommends    bool
}

// CheckSimulate reports whether SimulateApt can model the rendered
// description in descDir, without running anything.
func CheckSimulate(descDir string, profiles []string, arch string) error {
	_, err := simulateInputs(descDir, profiles, arch)
	return err
}

func simulateInputs(descDir string, profiles []string, arch string) (*simulation, error) {
	d, file, err := readDescription(descDir)
	if err != nil {
		return nil, err
	}
	if d.isRPM() {
		return nil, errors.New("simulate: not an apt description")
	}
	var rd resolveDescription
	if err := readXML(file, &rd); err != nil {
		return nil, err
	}
	darch, ok := debArch[arch]
	if !ok {
		return nil, fmt.Errorf("simulate: arch %q", arch)
	}
	sources, err := sourcesList(&rd, profiles)
	if err != nil {
		return nil, err
	}
	lists, err := rd.packageLists(profiles)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if lists.other != "" {
		// kiwi deletes or uninstalls them after the install, which the
		// model does not follow.
		return nil, fmt.Errorf("simulate: packages of type %q", lists.other)
	}
	return &simulation{sources: sources, arch: darch, image: lists.image, recommends: lists.recommends}, nil
}

// parseStatus returns the installed packages of a dpkg status file by
// "name:arch".
func parseStatus(b []byte) map[string]SimPackage {
	out := map[string]SimPackage{}
	for para := range strings.SplitSeq(string(b), "\n\n") {
		var p SimPackage
		installed := false
		for line := range strings.SplitSeq(para, "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				continue
			}
			switch k {
			case "Package":
				p.Name = v
			case "Version":
				p.Version = v
			case "Architecture":
				p.Arch = v
			case "Status":
				installed = v == "install ok installed"
			}
		}
		if installed && p.Name != "" {
			out[p.Name+":"+p.Arch] = p
		}
	}
	return out
}
