// Package builders holds the step implementations of imsbuild: importer
// (existing root → tree), pack (tree → squashfs rootfs, kernel, initrd),
// sandbox (isolated command execution), customize (image → image), kiwi
// (recipe → image), sshenv (interactive SSH environment) and builderimage
// (the OCI image a sandbox runs in). steps composes them into the step
// kinds the engine runs (steps.Op).
package builders
