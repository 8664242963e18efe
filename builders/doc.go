// Package builders holds the step implementations of imsbuild: importer
// (existing root → tree), pack (tree → squashfs rootfs, kernel, initrd),
// sandbox (isolated command execution), customize (image → image) and, later,
// kiwi (recipe → image) and sshenv (interactive SSH environment).
package builders
