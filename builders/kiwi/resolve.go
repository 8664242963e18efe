package kiwi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Resolving a description's package files ahead of kiwi, so that the
// package proxy can fetch them in parallel while debootstrap and apt ask
// for them one by one (see pkgproxy.Proxy.Prefetch). The host's apt-get
// resolves what kiwi's debootstrap (--variant=minbase: the required
// packages and apt, with the bootstrap packages) and apt-get install
// --no-install-recommends of the image packages install, in a scratch
// apt directory with an empty dpkg status, against the description's
// repositories and through the package proxy. Its answer is a guess: a
// file the build then does not ask for costs only bandwidth, one it asks
// for that is missing only a download of its own. rpm descriptions are
// not resolved (zypper and dnf have no root-less dry run against foreign
// repositories that would be worth its time here).

// PackageFile is a package file of a resolution: its http:// URL, as apt
// requests it, and the sha256 (hex) of the repository's index.
type PackageFile struct {
	URL    string
	SHA256 string
}

// maxResolveOutput bounds what apt-get prints for a resolution.
const maxResolveOutput = 32 << 20

// resolveDescription is what ResolveApt reads of a kiwi description.
type resolveDescription struct {
	Repositories []struct {
		Type         string `xml:"type,attr"`
		Distribution string `xml:"distribution,attr"`
		Components   string `xml:"components,attr"`
		GPGCheck     string `xml:"repository_gpgcheck,attr"`
		Profiles     string `xml:"profiles,attr"`
		Source       struct {
			Path    string `xml:"path,attr"`
			Signing []struct {
				Key string `xml:"key,attr"`
			} `xml:"signing"`
		} `xml:"source"`
	} `xml:"repository"`
	Packages []struct {
		Type        string `xml:"type,attr"`
		Profiles    string `xml:"profiles,attr"`
		PatternType string `xml:"patternType,attr"`
		Package     []struct {
			Name string `xml:"name,attr"`
		} `xml:"package"`
	} `xml:"packages"`
}

var (
	// Debian policy's package names: no option, no apt pattern.
	debName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*$`)
	// Distributions and components as they go into a sources.list line.
	aptWord = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)
	// A keyring path as it goes into signed-by.
	keyPath = regexp.MustCompile(`^/[A-Za-z0-9._/+-]+$`)
)

// debArch maps a recipe's arch to dpkg's.
var debArch = map[string]string{"x86_64": "amd64", "aarch64": "arm64"}

// ResolveApt resolves the package files that the kiwi description in
// descDir (rendered) installs for profiles and arch (x86_64, aarch64),
// with the host's apt-get in the scratch directory dir (created), its
// http requests going through proxy ("" for none). It calls found with
// the bootstrap set, in apt's order, as soon as it has it, then with what
// the image packages add, so that fetching can start early. Only http://
// repositories are
// used; a description that is no apt one, a repository that cannot be
// resolved (no distribution, no key to check its index with, a syntax apt
// would not take) or a failing apt-get is an error.
func ResolveApt(ctx context.Context, descDir string, profiles []string, arch, proxy, dir string, found func([]PackageFile)) error {
	d, file, err := readDescription(descDir)
	if err != nil {
		return err
	}
	if d.isRPM() {
		return errors.New("resolve packages: not an apt description")
	}
	var rd resolveDescription
	if err := readXML(file, &rd); err != nil {
		return err
	}
	darch, ok := debArch[arch]
	if !ok {
		return fmt.Errorf("resolve packages: arch %q", arch)
	}
	sources, err := sourcesList(&rd, profiles)
	if err != nil {
		return err
	}
	lists, err := rd.packageLists(profiles)
	if err != nil {
		return fmt.Errorf("resolve packages: %w", err)
	}
	bootstrap := append([]string{"?priority(required)", "apt"}, lists.bootstrap...)
	image, recommends := lists.image, lists.recommends

	apt, err := newScratchApt(dir, sources, darch, proxy, recommends)
	if err != nil {
		return err
	}
	if _, err := apt.run(ctx, "update"); err != nil {
		return err
	}
	first, err := apt.printURIs(ctx, bootstrap)
	if err != nil {
		return err
	}
	found(first)
	all, err := apt.printURIs(ctx, append(bootstrap, image...))
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, f := range first {
		seen[f.URL] = true
	}
	var rest []PackageFile
	for _, f := range all {
		if !seen[f.URL] {
			seen[f.URL] = true
			rest = append(rest, f)
		}
	}
	found(rest)
	return nil
}

func readXML(file string, v any) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := xml.NewDecoder(f).Decode(v); err != nil {
		return fmt.Errorf("parse %s: %w", file, err)
	}
	return nil
}

// inProfiles reports whether a section with the profiles attribute attr
// (comma-separated, "" for every build) is part of a build of profiles.
func inProfiles(attr string, profiles []string) bool {
	if attr == "" {
		return true
	}
	for p := range strings.SplitSeq(attr, ",") {
		if slices.Contains(profiles, strings.TrimSpace(p)) {
			return true
		}
	}
	return false
}

// sourcesList returns the sources.list of the description's http://
// apt repositories.
func sourcesList(d *resolveDescription, profiles []string) (string, error) {
	var b strings.Builder
	for _, r := range d.Repositories {
		if r.Type != "apt-deb" || !inProfiles(r.Profiles, profiles) {
			continue
		}
		u, err := url.Parse(r.Source.Path)
		if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
			strings.ContainsAny(r.Source.Path, " \t\r\n[]#") {
			continue // https and local repositories go around the proxy
		}
		if !aptWord.MatchString(r.Distribution) {
			return "", fmt.Errorf("resolve packages: repository %s: distribution %q", r.Source.Path, r.Distribution)
		}
		comps := strings.Fields(strings.ReplaceAll(r.Components, ",", " "))
		if len(comps) == 0 {
			comps = []string{"main"}
		}
		for _, c := range comps {
			if !aptWord.MatchString(c) {
				return "", fmt.Errorf("resolve packages: repository %s: component %q", r.Source.Path, c)
			}
		}
		var opt string
		switch {
		case r.GPGCheck == "false":
			// kiwi does not check it either: the build trusts what the
			// repository says, and so does its resolution.
			opt = "trusted=yes"
		case len(r.Source.Signing) > 0:
			var keys []string
			for _, s := range r.Source.Signing {
				p, ok := strings.CutPrefix(s.Key, "file://")
				if !ok || !keyPath.MatchString(p) || filepath.Clean(p) != p {
					return "", fmt.Errorf("resolve packages: repository %s: signing key %q is no local file", r.Source.Path, s.Key)
				}
				if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
					return "", fmt.Errorf("resolve packages: repository %s: signing key %s: not a file", r.Source.Path, p)
				}
				keys = append(keys, p)
			}
			opt = "signed-by=" + strings.Join(keys, ",")
		default:
			return "", fmt.Errorf("resolve packages: repository %s: no signing key to check its index with", r.Source.Path)
		}
		fmt.Fprintf(&b, "deb [%s] %s %s %s\n", opt, strings.TrimSuffix(r.Source.Path, "/"), r.Distribution, strings.Join(comps, " "))
	}
	if b.Len() == 0 {
		return "", errors.New("resolve packages: no http:// apt repository")
	}
	return b.String(), nil
}

// scratchApt is the host's apt-get confined to a scratch directory: its
// own sources, lists, caches and configuration, and an empty dpkg status.
type scratchApt struct {
	config string // APT_CONFIG
	proxy  string
}

func newScratchApt(dir, sources, arch, proxy string, recommends bool) (*scratchApt, error) {
	for _, d := range []string{"lists/partial", "archives/partial", "etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "etc/trusted.gpg.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("resolve packages: %w", err)
		}
	}
	files := map[string]string{
		"status":           "",
		"etc/sources.list": sources,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("resolve packages: %w", err)
		}
	}
	// APT_CONFIG is read before the host's apt.conf.d, which Dir::Etc::Parts
	// then replaces: no host setting (DEP-11, translations, a proxy) applies.
	// dir is ours, made by the caller: no quoting needed beyond what
	// keeps a path a path.
	if strings.ContainsAny(dir, "\"\n;{}") {
		return nil, fmt.Errorf("resolve packages: scratch directory %q", dir)
	}
	var c strings.Builder
	set := func(k, v string) { fmt.Fprintf(&c, "%s \"%s\";\n", k, v) }
	set("Dir::State", dir)
	set("Dir::State::Lists", filepath.Join(dir, "lists"))
	set("Dir::State::status", filepath.Join(dir, "status"))
	set("Dir::Cache", dir)
	set("Dir::Cache::archives", filepath.Join(dir, "archives"))
	set("Dir::Etc", filepath.Join(dir, "etc"))
	set("Dir::Etc::SourceList", filepath.Join(dir, "etc/sources.list"))
	set("Dir::Etc::SourceParts", filepath.Join(dir, "etc/sources.list.d"))
	set("Dir::Etc::Parts", filepath.Join(dir, "etc/apt.conf.d"))
	set("Dir::Etc::Preferences", filepath.Join(dir, "etc/preferences"))
	set("Dir::Etc::PreferencesParts", filepath.Join(dir, "etc/preferences.d"))
	set("Dir::Etc::Trusted", filepath.Join(dir, "etc/trusted.gpg"))
	set("Dir::Etc::TrustedParts", filepath.Join(dir, "etc/trusted.gpg.d"))
	set("APT::Architecture", arch)
	set("APT::Architectures", arch)
	set("APT::Install-Recommends", fmt.Sprint(recommends))
	set("APT::Sandbox::User", "root")
	set("Debug::NoLocking", "true")
	set("Acquire::Languages", "none")
	set("Acquire::ForceHash", "SHA256") // --print-uris prints the sha256
	set("Acquire::Retries", "0")
	set("Acquire::http::Proxy", proxyOrDirect(proxy))
	conf := filepath.Join(dir, "apt.conf")
	if err := os.WriteFile(conf, []byte(c.String()), 0o644); err != nil {
		return nil, fmt.Errorf("resolve packages: %w", err)
	}
	return &scratchApt{config: conf, proxy: proxy}, nil
}

func proxyOrDirect(p string) string {
	if p == "" || strings.ContainsAny(p, "\"\n;{}") {
		return "DIRECT"
	}
	return p
}

// run runs apt-get with args and returns its standard output.
func (a *scratchApt) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-qq"}, args...)...)
	cmd.Env = []string{"APT_CONFIG=" + a.config, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = maxResolveOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("resolve packages: apt-get %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	if stdout.over {
		return nil, fmt.Errorf("resolve packages: apt-get %s: more than %d bytes of output", args[0], maxResolveOutput)
	}
	return stdout.Bytes(), nil
}

// printURIs returns the package files apt-get would download to install
// pkgs on an empty system.
func (a *scratchApt) printURIs(ctx context.Context, pkgs []string) ([]PackageFile, error) {
	out, err := a.run(ctx, append([]string{"install", "--print-uris", "-y"}, pkgs...)...)
	if err != nil {
		return nil, err
	}
	return parseURIs(out), nil
}

// parseURIs reads apt-get --print-uris lines, 'URL' file size SHA256:hex,
// and keeps those of http:// package files with a sha256.
func parseURIs(b []byte) []PackageFile {
	var out []PackageFile
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || len(f[0]) < 2 || f[0][0] != '\'' || f[0][len(f[0])-1] != '\'' {
			continue
		}
		raw := f[0][1 : len(f[0])-1]
		sum, ok := strings.CutPrefix(f[3], "SHA256:")
		if !ok || !isHex64(sum) || !strings.HasPrefix(raw, "http://") {
			continue
		}
		if _, err := url.Parse(raw); err != nil {
			continue
		}
		out = append(out, PackageFile{URL: raw, SHA256: sum})
	}
	return out
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := l.max - l.Len(); room < len(p) {
		l.over = true
		p = p[:max(room, 0)]
	}
	l.Buffer.Write(p)
	return n, nil
}

// packageLists are the package names of a description's package
// sections in the build's profiles.
type packageLists struct {
	bootstrap, image []string
	recommends       bool   // a plusRecommended section
	other            string // the type of another section with packages (delete, uninstall), if any
}

// packageLists reads rd's package sections in profiles; a name that is
// not a Debian package name is an error.
func (rd *resolveDescription) packageLists(profiles []string) (packageLists, error) {
	var l packageLists
	for _, p := range rd.Packages {
		if !inProfiles(p.Profiles, profiles) {
			continue
		}
		if p.PatternType == "plusRecommended" {
			l.recommends = true
		}
		for _, pkg := range p.Package {
			if !debName.MatchString(pkg.Name) {
				return packageLists{}, fmt.Errorf("package name %q", pkg.Name)
			}
			switch p.Type {
			case "bootstrap":
				l.bootstrap = append(l.bootstrap, pkg.Name)
			case "image":
				l.image = append(l.image, pkg.Name)
			default:
				if l.other == "" {
					l.other = p.Type
				}
			}
		}
	}
	return l, nil
}
