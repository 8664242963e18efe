package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=…").
var version = "0.1.0-dev"

// globalFlags are the flags every build command shares.
type globalFlags struct {
	vars      []string
	varFiles  []string
	jobs      int
	cacheDir  string
	cacheFrom []string
	cacheTo   string
	json      bool
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "imsbuild",
		Short: "Build IMS boot images from HCL build files, with a content-addressed cache",
		Long: `imsbuild builds boot images the way HPE Cray's Image Management Service (IMS) does —
kiwi-ng recipe → image, image → customized image — as a declarative, cached batch build.

A build is every *.ims.hcl file of a directory. imsbuild hashes every input of every step
(recipe trees, scripts, files, parent images, tool versions) and skips steps whose result is
already in the cache. Results are published as squashfs rootfs + kernel + initrd with IMS
manifests and records: to a local directory (the IMS S3 layout), S3, OCI registries or IMS.

Exit codes: 0 ok, 1 build failed (or build --check found a difference), 2 usage or
configuration error (or build --check of a step not yet built), 130 cancelled.`,
		Example: `  imsbuild validate examples/busybox        # check the build files, print diagnostics
  imsbuild plan --explain examples/busybox  # what would be built, and why
  imsbuild build examples/busybox           # build everything, publish to the declared outputs
  imsbuild build examples/busybox image.compute -var motd="hello"
  imsbuild build --json -j 2 .              # one JSON event per line, two steps at a time`,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if g.jobs < 1 {
				return usageError{fmt.Errorf("-j %d: the number of parallel steps must be at least 1", g.jobs)}
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	pf := root.PersistentFlags()
	pf.StringArrayVar(&g.vars, "var", nil, "set a variable: -var name=value (repeatable; wins over -var-file and IMSBUILD_VAR_name)")
	pf.StringArrayVar(&g.varFiles, "var-file", nil, "read variables from an HCL file such as site.imsvars.hcl (repeatable)")
	pf.IntVarP(&g.jobs, "jobs", "j", 2, "run up to N steps at a time")
	pf.StringVar(&g.cacheDir, "cache-dir", "", "cache directory (default: imsbuild.cache.dir, else <build dir>/.imsbuild/cache)")
	pf.StringArrayVar(&g.cacheFrom, "cache-from", nil, "also read results from this remote cache: s3://bucket/prefix[?endpoint=…&path_style=true] or oci://registry/repo (repeatable)")
	pf.StringVar(&g.cacheTo, "cache-to", "", "write results through to this remote cache (same URL forms; it is read too)")
	pf.BoolVar(&g.json, "json", false, "print one JSON object per line instead of text")
	root.AddCommand(
		newValidateCmd(g),
		newPlanCmd(g),
		newBuildCmd(g),
		newLockCmd(g),
		newVerifyCmd(g),
		newGraphCmd(g),
		newFmtCmd(),
		newCacheCmd(g),
		newVersionCmd(),
		newDocsCmd(),
		newServeCmd(),
		newInternalCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the imsbuild version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "imsbuild "+version)
		},
	}
}
