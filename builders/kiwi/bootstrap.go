package kiwi

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/internal/environ"
	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/spec"
)

// The bootstrap cache. kiwi-ng bootstraps an apt recipe with debootstrap
// (about 25 s for a minimal bookworm root), and what debootstrap makes
// depends only on its options, the suite's Release file (which pins every
// package version), the keyring, debootstrap itself, the host files it
// copies (resolv.conf, hostname) and the root kiwi prepared for it. Prepare
// with a BootstrapCache puts a `debootstrap` shim first in kiwi's PATH: this
// program re-executed under that name (MaybeRunBootstrapShim). The shim keys
// those inputs; on a hit it unpacks the kept root into kiwi's root, on a miss
// it runs the real debootstrap and keeps a squashfs of the result. Anything
// it cannot key (an option it does not know, an unreachable Release file)
// runs the real debootstrap uncached.

const (
	envBootstrapCache = "IMSBUILD_BOOTSTRAP_CACHE" // the cache directory
	envDebootstrap    = "IMSBUILD_DEBOOTSTRAP"     // the real debootstrap
	envBootstrapLog   = "IMSBUILD_BOOTSTRAP_LOG"   // the shim's notes for Prepare's log
	// envBootstrapStatus is where the shim copies the bootstrap root's
	// dpkg status (PrepareOptions.BootstrapStatus).
	envBootstrapStatus = "IMSBUILD_BOOTSTRAP_STATUS"
	envDebootstrapArch = "IMSBUILD_DEBOOTSTRAP_ARCH" // --arch for a foreign root (dpkg's name)
	envChroot          = "IMSBUILD_CHROOT"           // the real chroot, for the chroot shim
	chrootShimName     = "chroot"
	shimName           = "debootstrap"
	// bootstrapKeep is how many cached roots are kept (the most recently used).
	bootstrapKeep = 4
)

// MaybeRunBootstrapShim runs the debootstrap shim and exits when this
// process was started as it (see PrepareOptions.BootstrapCache and
// TargetArch); otherwise it returns at once. Programs that run Prepare with
// a BootstrapCache or a foreign TargetArch call it first thing in main (and
// test binaries in TestMain).
func MaybeRunBootstrapShim() {
	if filepath.Base(os.Args[0]) == chrootShimName && os.Getenv(envChroot) != "" {
		os.Exit(runChrootShim(os.Getenv(envChroot), os.Args[1:]))
	}
	cache, arch := os.Getenv(envBootstrapCache), os.Getenv(envDebootstrapArch)
	if filepath.Base(os.Args[0]) != shimName || cache == "" && arch == "" {
		return
	}
	os.Exit(runShim(withArch(os.Args[1:], arch), cache, os.Getenv(envDebootstrap)))
}

// targetArchArg is how kiwi (9.24) passes its --target-arch to the package
// manager: an argument "_target_arch%<arch>", which its zypper and dnf
// backends turn into their own option and its apt backend passes on to
// apt-get in the root as it is, where apt-get fails ("E: Invalid operation
// _target_arch%aarch64"). apt in a foreign root is of the root's
// architecture already, so the chroot shim, first in kiwi's PATH for a
// foreign TargetArch, drops the argument.
const targetArchArg = "_target_arch%"

// runChrootShim execs the real chroot with args without kiwi's
// _target_arch% arguments; it returns an exit code only when exec fails.
func runChrootShim(real string, args []string) int {
	out := []string{real}
	for _, a := range args {
		if !strings.HasPrefix(a, targetArchArg) {
			out = append(out, a)
		}
	}
	err := syscall.Exec(real, out, os.Environ())
	fmt.Fprintf(os.Stderr, "imsbuild chroot shim: %v\n", err)
	return 127
}

// withArch adds --arch=arch to debootstrap's args: kiwi (9.24) passes no
// --arch to debootstrap for its --target-arch, so debootstrap would make a
// root of the host's architecture. An --arch given already stays.
func withArch(args []string, arch string) []string {
	if arch == "" {
		return args
	}
	for _, a := range args {
		if a == "--arch" || strings.HasPrefix(a, "--arch=") {
			return args
		}
	}
	return append([]string{"--arch=" + arch}, args...)
}

// setupShim makes dir hold the debootstrap shim and returns the environment
// that puts it first in PATH. The shim notes what it did in dir/notes
// (kiwi keeps debootstrap's output to its own log file).
// debArch, when not "", is the --arch the shim adds (see withArch), and
// puts the chroot shim (see targetArchArg) beside it.
func setupShim(dir, cacheDir, path, debArch string) ([]string, error) {
	real, err := exec.LookPath("debootstrap")
	if err != nil {
		return nil, fmt.Errorf("bootstrap cache: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bootstrap cache: %w", err)
	}
	if err := os.Symlink(self, filepath.Join(dir, shimName)); err != nil {
		return nil, fmt.Errorf("bootstrap cache: %w", err)
	}
	var chroot []string
	if debArch != "" {
		real, err := exec.LookPath("chroot")
		if err != nil {
			return nil, fmt.Errorf("foreign root: %w", err)
		}
		if err := os.Symlink(self, filepath.Join(dir, chrootShimName)); err != nil {
			return nil, fmt.Errorf("foreign root: %w", err)
		}
		chroot = []string{envChroot + "=" + real}
	}
	return append(chroot,
		"PATH="+dir+":"+path,
		envBootstrapCache+"="+cacheDir,
		envDebootstrap+"="+real,
		envBootstrapLog+"="+filepath.Join(dir, "notes"),
		envBootstrapStatus+"="+filepath.Join(dir, "bootstrap-status"),
		envDebootstrapArch+"="+debArch,
	), nil
}

// note prints a line of the shim and adds it to its notes for Prepare.
func note(format string, args ...any) {
	line := fmt.Sprintf("imsbuild: "+format+"\n", args...)
	os.Stdout.WriteString(line)
	if path := os.Getenv(envBootstrapLog); path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			f.WriteString(line)
			f.Close()
		}
	}
}

// debootstrapCall is a parsed debootstrap command line.
type debootstrapCall struct {
	options []string // as given, in order
	suite   string
	target  string
	mirror  string
	script  string
	keyring string // --keyring value
	arch    string // --arch value
}

// debootstrapFlags are the valueless options the shim understands; options
// with a value must use the --name=value form.
var debootstrapFlags = map[string]bool{
	"--no-check-gpg": true, "--force-check-gpg": true, "--merged-usr": true,
	"--no-merged-usr": true, "--verbose": true, "--no-resolve-deps": true,
	"--keep-debootstrap-dir": true,
}

// debootstrapValues are the --name=value options the shim understands.
var debootstrapValues = map[string]bool{
	"--keyring": true, "--variant": true, "--include": true, "--exclude": true,
	"--components": true, "--arch": true, "--extractor": true,
}

// parseDebootstrap parses args, or reports that the shim cannot key them.
func parseDebootstrap(args []string) (debootstrapCall, bool) {
	var c debootstrapCall
	var pos []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(a, "=")
		switch {
		case hasValue && debootstrapValues[name]:
			switch name {
			case "--keyring":
				c.keyring = value
			case "--arch":
				c.arch = value
			}
		case !hasValue && debootstrapFlags[name]:
		default:
			return c, false
		}
		c.options = append(c.options, a)
	}
	if len(pos) < 3 || len(pos) > 4 {
		return c, false
	}
	if u, err := url.Parse(pos[2]); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return c, false
	}
	c.suite, c.target, c.mirror = pos[0], pos[1], strings.TrimSuffix(pos[2], "/")
	if len(pos) == 4 {
		c.script = pos[3]
	}
	return c, true
}

// runShim is the debootstrap shim's main; it returns the exit code.
func runShim(args []string, cacheDir, real string) int {
	if real == "" {
		fmt.Fprintln(os.Stderr, "imsbuild debootstrap shim: "+envDebootstrap+" not set")
		return 1
	}
	if cacheDir == "" {
		return runReal(real, args) // only the --arch of a foreign root
	}
	c, ok := parseDebootstrap(args)
	if !ok {
		return runReal(real, args)
	}
	key, preimage, err := c.key(context.Background(), real)
	if err != nil {
		note("bootstrap cache not used: %v", err)
		return runReal(real, args)
	}
	b := &bootstrapCache{dir: cacheDir}
	code, err := b.run(c, key, preimage, func() int { return runReal(real, args) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "imsbuild: bootstrap cache: %v\n", err)
		return 1
	}
	if code == 0 {
		keepStatus(c.target)
	}
	return code
}

// keepStatus copies the dpkg status of the bootstrap root target where
// Prepare picks it up (PrepareOptions.BootstrapStatus), if it asked.
func keepStatus(target string) {
	dst := os.Getenv(envBootstrapStatus)
	if dst == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(target, "var/lib/dpkg/status"))
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		note("bootstrap status not kept: %v", err)
	}
}

// runReal runs the real debootstrap with args and returns its exit code.
func runReal(real string, args []string) int {
	cmd := exec.Command(real, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "imsbuild debootstrap shim: %v\n", err)
		return 1
	}
	return 0
}

// bootstrapPreimage is what a cached bootstrap root is keyed by.
type bootstrapPreimage struct {
	Type       string            `json:"type"`
	Options    []string          `json:"options"`
	Suite      string            `json:"suite"`
	Mirror     string            `json:"mirror"`
	Script     string            `json:"script,omitempty"`
	Arch       string            `json:"arch"`  // the root's: --arch, else the host's
	Files      map[string]string `json:"files"` // debootstrap, its script, keyring, host files → sha256
	Release    string            `json:"release"`
	TargetPrep string            `json:"target"` // digest of the root before debootstrap
	// Epoch is the SOURCE_DATE_EPOCH debootstrap ran with: it dates what
	// the packages' maintainer scripts write (shadow's last password
	// change). Unkeyed, a build with another epoch restored a root dated
	// by the first one's and published other bytes than a fresh bootstrap.
	Epoch string `json:"source_date_epoch"`
}

// key returns the hex sha256 that names c's result and its preimage.
func (c debootstrapCall) key(ctx context.Context, real string) (string, []byte, error) {
	p := bootstrapPreimage{
		Type: "imsbuild/debootstrap/v4", Options: keyedOptions(c.options), Suite: c.suite,
		Mirror: c.mirror, Script: c.script, Arch: runtime.GOARCH, Files: map[string]string{},
		Epoch: os.Getenv("SOURCE_DATE_EPOCH"),
	}
	if c.arch != "" {
		// An arm64 root is kept apart from an amd64 one (also by
		// Options); an explicit --arch of the host's architecture
		// keys as that architecture.
		p.Arch = c.arch
	}
	script := c.script
	if script == "" {
		script = filepath.Join("/usr/share/debootstrap/scripts", c.suite)
	}
	files := map[string]string{
		"debootstrap": real, "script": script, "functions": "/usr/share/debootstrap/functions",
		"resolv.conf": "/etc/resolv.conf", "hostname": "/etc/hostname",
	}
	if c.keyring != "" {
		files["keyring"] = c.keyring
	}
	for name, path := range files {
		d, err := treehash.File(ctx, path, nil)
		if errors.Is(err, fs.ErrNotExist) && (name == "resolv.conf" || name == "hostname") {
			d = "none" // debootstrap copies them only when present
		} else if err != nil {
			return "", nil, err
		}
		p.Files[name] = d
	}
	// The suite's InRelease (else Release), as track_repos digests it,
	// fetched through the environment's proxy.
	suite := &spec.Repository{Name: c.suite, Type: "apt", URL: c.mirror, Distribution: c.suite}
	rel, err := repoDigest(ctx, &http.Client{Timeout: time.Minute}, suite)
	if err != nil {
		return "", nil, err
	}
	p.Release = rel
	if p.TargetPrep, err = treeListing(ctx, c.target); err != nil {
		return "", nil, err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), b, nil
}

// keyedOptions is options without the keyring's path: kiwi passes a
// keyring inside its shared cache slot (cache-0, cache-1, … whichever was
// free), and the keyring's content is keyed in Files anyway. Keying the path
// made a build that got another slot miss the cache.
func keyedOptions(options []string) []string {
	out := make([]string, len(options))
	for i, o := range options {
		if strings.HasPrefix(o, "--keyring=") {
			o = "--keyring"
		}
		out[i] = o
	}
	return out
}

// treeListing digests the names, types, modes and owners of the tree at
// root (and symlink targets and file contents), skipping mount points and
// kiwi's temporaries: what kiwi put into the root before it called
// debootstrap.
func treeListing(ctx context.Context, root string) (string, error) {
	skip, err := notKept(root)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if skip[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%s %o %d:%d", rel, info.Mode(), st.Uid, st.Gid)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, " -> %s", t)
		case info.Mode().IsRegular():
			d, err := treehash.File(ctx, path, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, " %s", d)
		}
		fmt.Fprintln(h)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", root, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// notKept returns the paths below root, relative to it, that are neither
// keyed nor kept: mount points (kiwi bind mounts its shared package cache
// into the root) and kiwi's per-run temporary files at the top (kiwi_*, its
// apt configuration, removed by kiwi when it ends).
func notKept(root string) (map[string]bool, error) {
	skip, err := mountsBelow(root)
	if err != nil {
		return nil, err
	}
	tmps, err := filepath.Glob(filepath.Join(root, "kiwi_*"))
	if err != nil {
		return nil, err
	}
	for _, t := range tmps {
		skip[filepath.Base(t)] = true
	}
	return skip, nil
}

// mountsBelow returns the mount points strictly below root, relative to it.
func mountsBelow(root string) (map[string]bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	root = filepath.Clean(root)
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if rel, err := filepath.Rel(root, mp); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			out[rel] = true
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// bootstrapCache is the directory of kept bootstrap roots: <key>.squashfs,
// written under a temporary name and renamed, so an entry is whole or
// absent, beside <key>.json, its preimage (to see why a key changed).
type bootstrapCache struct {
	dir string
}

// run gives c.target the result of debootstrap: restored when key is kept,
// else by debootstrap (run), then kept. It returns debootstrap's exit code.
func (b *bootstrapCache) run(c debootstrapCall, key string, preimage []byte, debootstrap func() int) (int, error) {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return 0, err
	}
	// One bootstrap per key at a time: a second waits and then restores.
	lock := flock.New(filepath.Join(b.dir, key+".lock"))
	if err := lock.Lock(); err != nil {
		return 0, err
	}
	defer lock.Unlock()
	entry := filepath.Join(b.dir, key+".squashfs")
	if _, err := os.Stat(entry); err == nil {
		if err := unsquash(entry, c.target); err == nil {
			note("debootstrap %s restored from the bootstrap cache (%s)", c.suite, key[:12])
			now := time.Now()
			_ = os.Chtimes(entry, now, now) // most recently used
			return 0, nil
		} else {
			// A damaged entry: drop it and debootstrap over what it left.
			note("bootstrap cache: %v; running debootstrap", err)
			os.Remove(entry)
		}
	}
	if code := debootstrap(); code != 0 {
		return code, nil
	}
	note("debootstrap %s kept in the bootstrap cache (%s)", c.suite, key[:12])
	err := os.WriteFile(filepath.Join(b.dir, key+".json"), preimage, 0o644)
	if err == nil {
		err = b.keep(c.target, entry)
	}
	if err != nil {
		// The root is fine; only the cache missed out.
		note("bootstrap cache: %v", err)
	}
	b.prune()
	return 0, nil
}

// keep writes a squashfs of root (without what notKept names) to entry.
func (b *bootstrapCache) keep(root, entry string) error {
	skip, err := notKept(root)
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", entry, os.Getpid())
	defer os.Remove(tmp)
	args := []string{root, tmp, "-noappend", "-comp", "lz4", "-quiet", "-no-progress"}
	if len(skip) > 0 {
		args = append(args, "-e")
		for p := range skip {
			args = append(args, p)
		}
	}
	cmd := exec.Command("mksquashfs", args...)
	// The kept root must restore with debootstrap's own mtimes: mksquashfs
	// clamps every mtime to SOURCE_DATE_EPOCH when it is set (epoch 0 dated
	// every file 1970), and what kiwi builds next from those files, the
	// initrd first, then differed from a build that bootstrapped afresh.
	// (v4 of the key: v3 entries were made with clamped mtimes.)
	cmd.Env = environ.Without(os.Environ(), "SOURCE_DATE_EPOCH")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mksquashfs %s: %v: %s", root, err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, entry)
}

// unsquash unpacks entry over the existing directory dst.
func unsquash(entry, dst string) error {
	out, err := exec.Command("unsquashfs", "-f", "-q", "-n", "-d", dst, entry).CombinedOutput()
	if err != nil {
		return fmt.Errorf("unsquashfs %s: %v: %s", entry, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// prune keeps the bootstrapKeep most recently used entries and drops
// leftovers of killed runs.
func (b *bootstrapCache) prune() {
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		return
	}
	type kept struct {
		name string
		used time.Time
	}
	var roots []kept
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(e.Name(), ".squashfs"):
			roots = append(roots, kept{e.Name(), info.ModTime()})
		case strings.Contains(e.Name(), ".squashfs.tmp-") && time.Since(info.ModTime()) > time.Hour:
			os.Remove(filepath.Join(b.dir, e.Name()))
		}
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].used.After(roots[j].used) })
	for _, r := range roots[min(len(roots), bootstrapKeep):] {
		key := strings.TrimSuffix(r.name, ".squashfs")
		for _, ext := range []string{".squashfs", ".json", ".lock"} {
			os.Remove(filepath.Join(b.dir, key+ext))
		}
	}
}
