// Package lockfile reads and writes imsbuild's package lock,
// imsbuild.lock.json beside the build files: for each recipe, the packages
// its kiwi prepare resolved (name, version, arch, the sha256 of the
// downloaded .deb or .rpm and the URL path it came from) and the digests of
// the repositories' metadata at that time.
//
// The file is JSON laid out for diffs, one package a line, sorted, so that a
// package update is a one-line change in review:
//
//	{
//	  "version": 1,
//	  "recipes": {
//	    "node": {
//	      "repositories": {
//	        "debian": "sha256:5f0c…"
//	      },
//	      "packages": [
//	        {"name": "base-files", "version": "12.4+deb12u5", "arch": "amd64", "sha256": "0e5d…", "path": "/debian/pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb"},
//	        …
//	      ]
//	    }
//	  }
//	}
//
// Encode writes exactly this layout, so Parse then Encode of a file imsbuild
// wrote gives the same bytes. Parse treats the file as hostile: it is
// bounded in size and counts, rejects unknown fields and trailing data, and
// validates every name, version, digest and path (see limits.go).
package lockfile
