package binfmt

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// The emulator the kernel runs. A handler with the fix-binary flag runs
// the file the kernel opened when it was registered, not what its
// interpreter path holds now: a qemu-user-static upgraded since runs the
// old binary until the handler is registered again, and in a container the
// path names the container's file (or none) while the node's handler runs
// the node's. So Identity asks the kernel: it starts a tiny program of the
// architecture, which the kernel hands to the handler, and reads the
// emulator through /proc/PID/exe, the file that process runs, while the
// program waits on its stdin.

// errNoHandler: no binfmt_misc handler runs the architecture's binaries.
var errNoHandler = errors.New("no binfmt_misc handler")

// waitProgram is a static ELF executable of arch that reads one byte
// from stdin (blocking until it is closed) and exits 0; nil for an arch
// it has no code for.
func waitProgram(arch string) []byte {
	var machine elf.Machine
	var code []byte
	switch arch {
	case "aarch64":
		machine = elf.EM_AARCH64
		for _, insn := range []uint32{
			0xd2800000, // mov x0, #0      (stdin)
			0x910003e1, // mov x1, sp      (a byte of the stack)
			0xd2800022, // mov x2, #1
			0xd28007e8, // mov x8, #63     (read)
			0xd4000001, // svc #0
			0xd2800000, // mov x0, #0
			0xd2800ba8, // mov x8, #93     (exit)
			0xd4000001, // svc #0
		} {
			code = binary.LittleEndian.AppendUint32(code, insn)
		}
	case "x86_64":
		machine = elf.EM_X86_64
		code = []byte{
			0x31, 0xff, // xor edi, edi        (stdin)
			0x48, 0x89, 0xe6, // mov rsi, rsp  (a byte of the stack)
			0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
			0x31, 0xc0, // xor eax, eax        (read)
			0x0f, 0x05, // syscall
			0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
			0x31, 0xff, // xor edi, edi
			0x0f, 0x05, // syscall
		}
	default:
		return nil
	}
	const base = 0x400000
	hdrs := uint64(binary.Size(elf.Header64{}) + binary.Size(elf.Prog64{}))
	size := hdrs + uint64(len(code))
	h := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     base + hdrs,
		Phoff:     uint64(binary.Size(elf.Header64{})),
		Ehsize:    uint16(binary.Size(elf.Header64{})),
		Phentsize: uint16(binary.Size(elf.Prog64{})),
		Phnum:     1,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	p := elf.Prog64{
		Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
		Vaddr: base, Paddr: base, Filesz: size, Memsz: size, Align: 0x1000,
	}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, h)
	_ = binary.Write(&b, binary.LittleEndian, p)
	b.Write(code)
	return b.Bytes()
}

// running starts arch's wait program and returns the path of the file
// its process runs (/proc/PID/exe: the emulator) and a stop function to
// call when done with it. errNoHandler when the kernel has no handler for
// arch's binaries.
func running(ctx context.Context, arch string) (string, func(), error) {
	prog := waitProgram(arch)
	if prog == nil {
		return "", nil, fmt.Errorf("emulate %s: no probe program", arch)
	}
	f, err := os.CreateTemp("", "imsbuild-binfmt-probe-")
	if err != nil {
		return "", nil, err
	}
	path := f.Name()
	// Kept while the program runs: without binfmt_misc's O flag qemu
	// opens the program by its path, after the exec.
	remove := func() { os.Remove(path) }
	_, err = f.Write(prog)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, 0o700)
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("emulate %s: write the probe: %w", arch, err)
	}
	var cmd *exec.Cmd
	var stdin interface{ Close() error }
	for try := 0; ; try++ {
		cmd = exec.CommandContext(ctx, path)
		w, perr := cmd.StdinPipe()
		if perr != nil {
			return "", nil, perr
		}
		stdin = w
		err = cmd.Start()
		// Another goroutine's fork may briefly hold the file open
		// for writing (golang.org/issue/22315).
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || try == 20 {
			break
		}
		w.Close()
		time.Sleep(10 * time.Millisecond)
	}
	switch {
	case errors.Is(err, syscall.ENOEXEC):
		remove()
		return "", nil, errNoHandler
	case errors.Is(err, syscall.EACCES):
		remove()
		return "", nil, fmt.Errorf("emulate %s: run the probe %s: %w (is %s mounted noexec? set TMPDIR to a directory that is not)", arch, path, err, os.TempDir())
	case err != nil:
		remove()
		return "", nil, fmt.Errorf("emulate %s: run the probe %s: %w", arch, path, err)
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Wait()
		remove()
	}
	return "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe", stop, nil
}
