// Package binfmt runs binaries of another architecture on this machine:
// the qemu user-mode emulator (Debian's qemu-user-static) through the
// kernel's binfmt_misc, as IMS's kiwi builder does on x86_64 management
// nodes for aarch64 recipes.
//
// [Ensure] checks that the kernel hands the architecture's ELF binaries to a
// statically linked qemu with the fix-binary (F) flag, registering that
// handler when there is none. With F the kernel opens the emulator once, at
// registration, so it also runs binaries inside a chroot, an image root or a
// sandbox that has no qemu of its own: kiwi's chroot, debootstrap's second
// stage and customize scripts in bwrap, runc or the native sandbox all work
// unchanged. [Emulator.Identity] names the emulator the kernel runs (its
// version and the digest of its binary), which enters the cache keys of
// emulated steps.
package binfmt
