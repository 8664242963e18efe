package binfmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/treehash"
)

// DefaultDir is where binfmt_misc is mounted.
const DefaultDir = "/proc/sys/fs/binfmt_misc"

// target is an architecture qemu can emulate: its ELF magic and mask as
// binfmt_misc matches them (those of Debian's qemu-user-static).
type target struct {
	qemu   string // the emulator's program name
	magic  string // hex
	mask   string // hex
	deb    string // Debian's architecture name
	goArch string
}

var targets = map[string]target{
	"aarch64": {
		qemu:   "qemu-aarch64-static",
		magic:  "7f454c460201010000000000000000000200b700",
		mask:   "ffffffffffffff00fffffffffffffffffeffffff",
		deb:    "arm64",
		goArch: "arm64",
	},
	"x86_64": {
		qemu:   "qemu-x86_64-static",
		magic:  "7f454c4602010100000000000000000002003e00",
		mask:   "fffffffffffefe00fffffffffffffffffeffffff",
		deb:    "amd64",
		goArch: "amd64",
	},
}

// HostArch is this machine's architecture by its IMS name (x86_64,
// aarch64), or GOARCH for another.
func HostArch() string {
	for name, t := range targets {
		if t.goArch == runtime.GOARCH {
			return name
		}
	}
	return runtime.GOARCH
}

// Emulated reports whether images of arch (an IMS name) are built under
// emulation on this machine.
func Emulated(arch string) bool { return arch != "" && arch != HostArch() }

// DebianArch is the Debian (dpkg, debootstrap) name of arch, an IMS name;
// "" for an unknown one.
func DebianArch(arch string) string { return targets[arch].deb }

// Emulator is a registered binfmt_misc handler that runs arch's binaries.
type Emulator struct {
	Arch        string
	Handler     string // its name in the binfmt_misc directory
	Interpreter string // the emulator binary it runs, symlinks resolved
	Registered  bool   // Ensure registered it
	// toRegister: binfmt_misc, mounted here, has no handler of Arch
	// with the fix-binary flag, so Ensure registers Interpreter.
	toRegister bool
}

// Lookup returns the emulator that runs arch's binaries, without changing
// anything: the enabled handler of arch with the fix-binary flag in dir (""
// is DefaultDir), else qemu-<arch>-static from PATH, which Ensure would
// register (Handler ""; also when binfmt_misc is not mounted at dir, as in
// a container, though the kernel may have a handler). Keys name its
// Identity before a build runs.
func Lookup(arch, dir string) (*Emulator, error) {
	t, ok := targets[arch]
	if !ok {
		return nil, fmt.Errorf("emulate %s: unknown architecture", arch)
	}
	if dir == "" {
		dir = DefaultDir
	}
	if e, err := find(dir, arch, t); err != nil || e != nil {
		return e, err
	}
	qemu, err := exec.LookPath(t.qemu)
	if err != nil {
		return nil, fmt.Errorf("emulate %s: %s not found; install the qemu-user-static package (apt-get install qemu-user-static)", arch, t.qemu)
	}
	if qemu, err = filepath.Abs(qemu); err != nil {
		return nil, fmt.Errorf("emulate %s: %w", arch, err)
	}
	real, err := filepath.EvalSymlinks(qemu)
	if err != nil {
		return nil, fmt.Errorf("emulate %s: %w", arch, err)
	}
	_, err = os.Stat(filepath.Join(dir, "register"))
	return &Emulator{Arch: arch, Interpreter: real, toRegister: err == nil}, nil
}

// Ensure makes binaries of arch run on this machine (see the package doc).
// dir is the binfmt_misc directory ("" is DefaultDir); it is mounted when
// it is not. An enabled handler of arch with the fix-binary flag is used as
// it is; otherwise Ensure registers one (named imsbuild-<arch>) for
// qemu-<arch>-static from PATH; binfmt_misc prefers the newest handler, so
// it wins over one without the flag. What it did goes to log.
func Ensure(arch, dir string, log io.Writer) (*Emulator, error) {
	t, ok := targets[arch]
	if !ok {
		return nil, fmt.Errorf("emulate %s: unknown architecture", arch)
	}
	if dir == "" {
		dir = DefaultDir
	}
	if err := mounted(dir, log); err != nil {
		return nil, fmt.Errorf("emulate %s: %w", arch, err)
	}
	if st, err := os.ReadFile(filepath.Join(dir, "status")); err == nil && strings.TrimSpace(string(st)) != "enabled" {
		return nil, fmt.Errorf("emulate %s: binfmt_misc is disabled (%s/status); echo 1 > %s/status enables it", arch, dir, dir)
	}
	e, err := Lookup(arch, dir)
	if err != nil || e.Handler != "" {
		return e, err
	}
	e.Handler, e.Registered, e.toRegister = "imsbuild-"+arch, true, false
	// The path the kernel opens now (F): the one in PATH, its symlinks
	// resolved, so the handler runs what Identity names.
	line := fmt.Sprintf(":%s:M::%s:%s:%s:F", e.Handler, escape(t.magic), escape(t.mask), e.Interpreter)
	if err := os.WriteFile(filepath.Join(dir, "register"), []byte(line), 0); err != nil {
		// A concurrent step (-j) or build may have registered it
		// meanwhile (the kernel refuses a second one of the name).
		if again, ferr := find(dir, arch, t); ferr == nil && again != nil {
			return again, nil
		}
		return nil, fmt.Errorf("emulate %s: register binfmt_misc handler: %w", arch, err)
	}
	fmt.Fprintf(log, "registered binfmt_misc handler %s: %s with the fix-binary flag\n", e.Handler, e.Interpreter)
	return e, nil
}

// mounted mounts binfmt_misc at dir unless it is there (its register file).
func mounted(dir string, log io.Writer) error {
	if _, err := os.Stat(filepath.Join(dir, "register")); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := unix.Mount("binfmt_misc", dir, "binfmt_misc", 0, ""); err != nil {
		return fmt.Errorf("mount binfmt_misc at %s: %w", dir, err)
	}
	fmt.Fprintf(log, "mounted binfmt_misc at %s\n", dir)
	return nil
}

// find returns the enabled handler of t with the fix-binary flag, nil for none.
func find(dir, arch string, t target) (*Emulator, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, de := range entries {
		if de.Name() == "register" || de.Name() == "status" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		h := parseHandler(b)
		if !h.enabled || h.magic != t.magic || !strings.Contains(h.flags, "F") {
			continue
		}
		real, err := filepath.EvalSymlinks(h.interpreter)
		if err != nil {
			// With F the kernel holds the binary open; its path is
			// only what the identity names.
			real = h.interpreter
		}
		return &Emulator{Arch: arch, Handler: de.Name(), Interpreter: real}, nil
	}
	return nil, nil
}

// handler is a binfmt_misc entry file.
type handler struct {
	enabled     bool
	interpreter string
	flags       string
	magic       string
}

func parseHandler(b []byte) handler {
	var h handler
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch {
		case line == "enabled":
			h.enabled = true
		case k == "interpreter":
			h.interpreter = v
		case k == "flags:":
			h.flags = v
		case k == "magic":
			h.magic = v
		}
	}
	return h
}

// escape writes hex as the \xNN escapes of a register line.
func escape(hex string) string {
	var b strings.Builder
	for i := 0; i+1 < len(hex); i += 2 {
		b.WriteString(`\x` + hex[i:i+2])
	}
	return b.String()
}

// Identity names the emulator for cache keys: the first line of its
// --version and the sha256 of its binary. That is the binary the kernel
// runs for arch's programs (see running): the file a registered handler
// opened, which may not be what its path holds now, nor what the path
// names in a container. Interpreter's when there is no handler yet and
// Ensure would register Interpreter.
func (e *Emulator) Identity(ctx context.Context) (string, error) {
	bin := e.Interpreter
	if !e.toRegister {
		exe, stop, err := running(ctx, e.Arch)
		switch {
		case err == nil:
			defer stop()
			bin = exe
		case !errors.Is(err, errNoHandler):
			return "", err
		}
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", e.Interpreter, err)
	}
	version, _, _ := bytes.Cut(out, []byte("\n"))
	d, err := treehash.File(ctx, bin, nil)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(version)) + " " + d, nil
}
