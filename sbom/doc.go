// Package sbom lists the packages installed in an image root and writes
// them as an SPDX 2.3 JSON (or CycloneDX 1.6 JSON) software bill of
// materials.
//
// Scan reads the image's own package databases, never the host's: dpkg's
// var/lib/dpkg/status (parsed here, strictly, with bounded lines) and the
// rpm database in any of its three formats — sqlite (rpm ≥ 4.16), ndb and
// Berkeley DB — through github.com/anchore/go-rpmdb, a pure-Go reader. Every
// file is opened through an os.Root, so a symlink in a hostile image cannot
// point the scan at a host file; a malformed database is an error, not a
// crash. Each package has its name, version, architecture, source package,
// maintainer or vendor, homepage and license: an rpm's License tag, or a
// deb's licenses from its machine-readable (DEP-5) usr/share/doc/<pkg>/
// copyright file, mapped to SPDX identifiers (LicenseRef-Debian-<name> for
// names without one). Package databases record no checksum of the package
// files; a caller that knows them (a package lock) sets Package.Checksums.
//
// Inventory.SPDX makes the document with github.com/spdx/tools-golang: a
// root package for the image that CONTAINS one package per installed
// package, each with a package URL (pkg:deb/debian/…, pkg:rpm/…) and its
// license when it is a valid SPDX expression (NOASSERTION otherwise: older
// rpm free text such as "GPLv2+" is not guessed at). The output is
// deterministic: packages sorted, identifiers derived from the package, the
// creation time given by the caller (the build's SOURCE_DATE_EPOCH) and the
// namespace derived from the content, so a rebuild of the same image gives
// the same bytes.
//
// Inventory.CycloneDX makes the same content as a CycloneDX 1.6 BOM (with
// github.com/CycloneDX/cyclonedx-go), with a serial number derived from the
// content, for scanners that prefer it.
//
// The package knows nothing of the engine: it works on a root directory, so
// any image step can call it on its output.
package sbom
