package kiwi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/imsbuild/imsbuild/builders/binfmt"
	"github.com/imsbuild/imsbuild/internal/tail"
	"github.com/imsbuild/imsbuild/internal/threadpin"
)

// PrepareOptions configure Prepare.
type PrepareOptions struct {
	Description string   // the rendered kiwi description directory
	Root        string   // the image root to create; missing or an empty dir
	Profiles    []string // kiwi --profile, in order
	Type        string   // kiwi --type; "" uses the description's default type
	// TargetArch is kiwi's --target-arch (aarch64, x86_64); "" builds for
	// the host. A foreign one runs emulated (see package binfmt, whose
	// Ensure the caller runs first): the host's kiwi-ng gets a debootstrap
	// shim that adds debootstrap's --arch (kiwi passes none), and
	// everything in the root then runs emulated. A BuilderRoot of the
	// target's architecture (its platform's variant) runs emulated whole.
	TargetArch string
	// SharedCacheDir is kiwi's --shared-cache-dir (repository metadata and
	// package cache, bind mounted into the root); "" is kiwi's default
	// /var/cache/kiwi. Give each concurrent prepare its own. kiwi bind mounts
	// it at the same path inside the root and creates its parents there
	// first, so it must be absolute and not below /tmp or /var/tmp (they
	// would lose their sticky 1777 mode and apt in the root fails).
	SharedCacheDir string
	// Env holds extra "NAME=value" variables for kiwi (the allowlisted
	// ones, proxies); the rest of the host environment is not passed.
	Env []string
	Log io.Writer // kiwi's output; nil discards it
	// KiwiLog is kiwi's --logfile (the full debug log); "" uses a temporary
	// file that is removed afterwards.
	KiwiLog string
	// BuilderRoot is an unpacked builder environment (the rootfs of an OCI
	// image from builderimage.Unpack) whose kiwi-ng runs the prepare, so a
	// site pins its kiwi version the way IMS pins its builder container.
	// "" runs the host's kiwi-ng. The root is used read-only, as "/" of a
	// privileged runc container (kiwi mounts kernel filesystems into the
	// image root and makes device nodes) with the network on, the
	// description read-only at /mnt/desc, the parent of Root read-write at
	// /mnt/image and the shared cache dir read-write at its own path. It
	// needs kiwi-ng and what kiwi runs for the description (debootstrap,
	// rsync, gpg, keyrings) in its PATH.
	BuilderRoot string
	// BootstrapCache is a directory of kept debootstrap results (see
	// MaybeRunBootstrapShim, which the program must call first thing): an
	// apt recipe whose bootstrap inputs were seen before gets its bootstrap
	// root unpacked instead of debootstrapped. "" always runs debootstrap.
	// Only the host's kiwi-ng uses it.
	BootstrapCache string
	// ExistingRoot runs kiwi on the prepared root already at Root (kiwi's
	// --allow-existing-root): for an apt description whose root has
	// apt-get, kiwi skips the bootstrap, then does everything else a
	// prepare does (post_bootstrap.sh, apt-get install of the image
	// packages, the overlay, users, config.sh); see steps.Prepare's
	// derivation.
	ExistingRoot bool
	// BootstrapStatus, when not "", is where Prepare copies the dpkg
	// status of the root that the bootstrap cache's debootstrap shim made
	// or restored (the bootstrap packages alone), if it ran: a model of
	// what apt-get then installs starts from it (SimulateApt).
	BootstrapStatus string
}

// tailLines is how many lines of kiwi's log a PrepareError carries.
const tailLines = 30

// PrepareError is a failed or cancelled kiwi-ng system prepare.
type PrepareError struct {
	Description string
	KiwiLog     string   // kiwi's log file, when kept
	Tail        []string // the last lines of kiwi's log
	KiwiError   string   // kiwi's last [ ERROR ] message in Tail, if any
	Err         error
}

func (e *PrepareError) Error() string {
	var b strings.Builder
	// Description is a work dir of the caller's; callers name the recipe.
	b.WriteString("kiwi-ng system prepare: ")
	if e.KiwiError != "" {
		fmt.Fprintf(&b, "%s (%v)", e.KiwiError, e.Err)
	} else {
		fmt.Fprint(&b, e.Err)
	}
	if len(e.Tail) > 0 {
		b.WriteString("\nkiwi log (last lines):\n")
		b.WriteString(strings.Join(e.Tail, "\n"))
	}
	return b.String()
}

func (e *PrepareError) Unwrap() error { return e.Err }

// Prepare runs `kiwi-ng system prepare` of opts.Description into opts.Root:
// bootstrap, package installation, the root/ overlay and config.sh, not the
// image type's build (the engine packs the root itself).
//
// With no opts.BuilderRoot, the host's kiwi-ng runs under `unshare --mount
// --pid --uts --ipc --fork --kill-child --mount-proc --propagation slave`:
// its mounts (kernel filesystems and the shared cache bound into the root)
// stay in a private mount namespace and its processes in a private pid
// namespace, so when kiwi ends, fails or is killed because ctx is done, the
// kernel ends every process and drops every mount it made; nothing reaches
// the host's mount table. Slave, not private: the host's unmounts still
// reach it, so a customize's overlay unmounted meanwhile is not held (with
// its loop device) until kiwi ends. With opts.BuilderRoot, kiwi-ng of that root runs
// in a privileged runc container instead (see PrepareOptions.BuilderRoot).
// gpg runs with a private GNUPGHOME.
//
// opts.Root must not exist or be an empty directory (removed first: kiwi
// creates the root itself); its parent is created. kiwi's output streams to
// opts.Log. A failure is a *PrepareError carrying the last lines of kiwi's
// log. Prepare needs root.
func Prepare(ctx context.Context, opts PrepareOptions) error {
	perr := &PrepareError{Description: opts.Description}
	fail := func(err error) error { perr.Err = err; return perr }
	if opts.Description == "" || opts.Root == "" {
		return fail(errors.New("description and root are required"))
	}
	if err := checkSharedCacheDir(opts.SharedCacheDir); err != nil {
		return fail(err)
	}
	if err := checkBuilderRoot(opts); err != nil {
		return fail(err)
	}
	if opts.ExistingRoot {
		if fi, err := os.Stat(opts.Root); err != nil || !fi.IsDir() {
			return fail(fmt.Errorf("existing root %s: not a directory", opts.Root))
		}
	} else if err := clearRoot(opts.Root); err != nil {
		return fail(err)
	}
	tmp, err := os.MkdirTemp("", "imsbuild-kiwi-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	r := &prepareRun{opts: opts, tmp: tmp, gnupg: filepath.Join(tmp, "gnupg"), logFile: opts.KiwiLog}
	if err := os.Mkdir(r.gnupg, 0o700); err != nil {
		return fail(err)
	}
	if r.logFile == "" {
		r.logFile = filepath.Join(tmp, "kiwi.log")
	} else {
		perr.KiwiLog = r.logFile
		// kiwi appends to an existing log.
		if err := os.Remove(r.logFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
	}
	out := tail.New(tailLines)
	r.out = out
	if opts.Log != nil {
		r.out = io.MultiWriter(opts.Log, out)
	}

	if opts.BuilderRoot == "" {
		err = r.runHost(ctx)
	} else {
		err = r.runBuilder(ctx)
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	perr.Tail = tail.File(r.logFile, tailLines)
	if len(perr.Tail) == 0 {
		perr.Tail = out.Lines()
	}
	perr.KiwiError = kiwiError(perr.Tail)
	return fail(err)
}

// kiwiError returns the message of the last "[ ERROR   ]: 06:50:09 | msg"
// line of kiwi's log, the one line that says what went wrong.
func kiwiError(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], "[ ERROR ") {
			continue
		}
		if _, msg, ok := strings.Cut(lines[i], " | "); ok {
			return strings.TrimSpace(msg)
		}
	}
	return ""
}

// prepareRun is one Prepare after its checks.
type prepareRun struct {
	opts    PrepareOptions
	tmp     string    // private temporary dir on the host, removed afterwards
	gnupg   string    // GNUPGHOME on the host, in tmp
	logFile string    // kiwi's --logfile on the host
	out     io.Writer // kiwi's stdout and stderr
}

// runHost runs the host's kiwi-ng in private namespaces made by unshare.
func (r *prepareRun) runHost(ctx context.Context) error {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return err
	}
	kiwi, err := exec.LookPath("kiwi-ng")
	if err != nil {
		return err
	}
	// kiwi runs with umask 022 whatever imsbuild's is: it creates the
	// image root and /dev, whose modes must not depend on the builder.
	// debootstrap copies the host's /etc/hostname into the root (cp -a:
	// its name and its mode, which a recipe writing the file keeps), so
	// in kiwi's mount namespace that file is a fixed one: the image does
	// not name or depend on the machine that built it (a step pod's
	// hostname file is the kubelet's, 0644; this host's was 0755).
	hostname := filepath.Join(r.tmp, "hostname")
	if err := os.WriteFile(hostname, []byte("localhost\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(hostname, 0o644); err != nil { // whatever the umask
		return err
	}
	args := []string{
		"--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child",
		"--mount-proc", "--propagation", "slave",
		"/bin/sh", "-c", `umask 022 && { [ ! -e /etc/hostname ] || mount --bind "$0" /etc/hostname; } && exec "$@"`,
		hostname, kiwi,
	}
	args = append(args, kiwiArgs(r.opts, r.logFile)...)
	cmd := exec.CommandContext(ctx, unshare, args...)
	cmd.Stdout, cmd.Stderr = r.out, r.out
	cmd.Env = prepareEnv(r.gnupg, r.opts.Env)
	debArch := ""
	if binfmt.Emulated(r.opts.TargetArch) {
		debArch = binfmt.DebianArch(r.opts.TargetArch)
	}
	if r.opts.BootstrapCache != "" || debArch != "" {
		dir := filepath.Join(r.tmp, "shim")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		shim, err := setupShim(dir, r.opts.BootstrapCache, envValue(cmd.Env, "PATH"), debArch)
		if err != nil {
			return err
		}
		cmd.Env = append(cmd.Env, shim...)
		defer copyNotes(filepath.Join(dir, "notes"), r.out)
		if r.opts.BootstrapStatus != "" {
			defer func() {
				if b, err := os.ReadFile(filepath.Join(dir, "bootstrap-status")); err == nil {
					os.WriteFile(r.opts.BootstrapStatus, b, 0o644)
				}
			}()
		}
	}
	// If imsbuild dies, unshare dies, and --kill-child takes kiwi (the pid
	// namespace's init) and with it the whole namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error {
		// The group holds unshare and kiwi, the namespace's init: killing
		// init kills every process in the namespace.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second
	return threadpin.Run(cmd) // see threadpin: Pdeathsig is per thread
}

// kiwiArgs returns the kiwi-ng command line after the program name.
func kiwiArgs(opts PrepareOptions, logFile string) []string {
	var args []string
	for _, p := range opts.Profiles {
		args = append(args, "--profile", p)
	}
	if opts.SharedCacheDir != "" {
		args = append(args, "--shared-cache-dir", opts.SharedCacheDir)
	}
	if opts.TargetArch != "" {
		args = append(args, "--target-arch", opts.TargetArch)
	}
	if opts.Type != "" {
		args = append(args, "--type", opts.Type)
	}
	args = append(args, "--logfile", logFile,
		"system", "prepare", "--description", opts.Description, "--root", opts.Root)
	if opts.ExistingRoot {
		args = append(args, "--allow-existing-root")
	}
	return args
}

// dpkgForce is DPKG_FORCE for every dpkg that kiwi runs (debootstrap's in
// the new root, apt-get's in the chroot, config.sh's): dpkg's built-in
// defaults, which the variable replaces (security-mac, downgrade; the same
// since dpkg 1.19.5), plus unsafe-io. The image root is throw-away until
// packed and a failed prepare is thrown away whole, so dpkg's fsync of every
// unpacked file before its rename only waits for the disk: with unsafe-io
// the files are the same, written back by the kernel in its own time. rpm
// (zypper, dnf) does not fsync by default (%_flush_io 0). The variable is in
// the environment only, so nothing of it reaches the image.
const dpkgForce = "security-mac,downgrade,unsafe-io"

// prepareEnv is kiwi's environment: a fixed base, a private GNUPGHOME, and
// the caller's extra variables (which win). kiwi passes it on to the
// commands it runs in the image root, so it names no host-only path that
// those need (no TMPDIR: apt in the root would fail to create temp files).
func prepareEnv(gnupg string, extra []string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LANG=C.UTF-8",
		"GNUPGHOME=" + gnupg,
		"DPKG_FORCE=" + dpkgForce,
	}
	return append(env, extra...)
}

// copyNotes adds the debootstrap shim's notes, if any, to kiwi's output.
func copyNotes(path string, out io.Writer) {
	if b, err := os.ReadFile(path); err == nil {
		out.Write(b)
	}
}

// envValue returns the last value of name in env.
func envValue(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}

func checkSharedCacheDir(dir string) error {
	if dir == "" {
		return nil
	}
	clean := filepath.Clean(dir)
	if !filepath.IsAbs(clean) {
		return fmt.Errorf("shared cache dir %s: not an absolute path", dir)
	}
	for _, tmp := range []string{"/tmp", "/var/tmp"} {
		if clean == tmp || strings.HasPrefix(clean, tmp+"/") {
			return fmt.Errorf("shared cache dir %s: below %s, which kiwi would recreate in the image root without its sticky mode", dir, tmp)
		}
	}
	return nil
}

// clearRoot makes sure root does not exist and its parent does.
func clearRoot(root string) error {
	err := os.Remove(root) // only removes an empty directory
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image root %s exists and is not empty", root)
	}
	return os.MkdirAll(filepath.Dir(root), 0o755)
}

// versionRE matches the version in "KIWI (next generation) version 9.24.56".
var versionRE = regexp.MustCompile(`version\s+(\S+)`)

// ToolVersion returns the kiwi-ng version as "kiwi-ng 9.24.56", part of the
// prepare cache key.
func ToolVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "kiwi-ng", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("kiwi-ng --version: %w", err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("kiwi-ng --version: unexpected output %q", strings.TrimSpace(string(out)))
	}
	return "kiwi-ng " + string(m[1]), nil
}
