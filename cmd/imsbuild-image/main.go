// Command imsbuild-image writes the container images imsbuild's Kubernetes
// support uses, as OCI image layouts packed in a tar (load one into containerd
// with `ctr -n k8s.io images import FILE`; push one by untarring it and
// running `crane push DIR REF`).
//
//	imsbuild-image files -ref REF [-entrypoint PATH] OUT.tar SRC:DST...
//	imsbuild-image builder [-cache DIR] [-imsbuild BIN] [-ref REF] OUT.tar
//
// files makes a one-layer image of host files (each SRC copied to DST in the
// image, executable), e.g. the cluster's pause image. builder makes the
// builder image a Kubernetes step runs in: a Debian base with kiwi-ng and the
// tools the steps use, and imsbuild on top (see builder.go).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/imsbuild/imsbuild/internal/ociimage"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "files":
		err = filesCmd(os.Args[2:])
	case "builder":
		err = builderCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imsbuild-image:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: imsbuild-image files -ref REF [-entrypoint PATH] OUT.tar SRC:DST...\n       imsbuild-image builder [-cache DIR] [-imsbuild BIN] [-ref REF] OUT.tar")
	os.Exit(2)
}

func filesCmd(args []string) error {
	fs := flag.NewFlagSet("files", flag.ExitOnError)
	ref := fs.String("ref", "", "image reference written in the layout's index (required)")
	entrypoint := fs.String("entrypoint", "", "program the image runs")
	_ = fs.Parse(args)
	if *ref == "" || fs.NArg() < 2 {
		usage()
	}
	var files []ociimage.File
	for _, a := range fs.Args()[1:] {
		src, dst, ok := strings.Cut(a, ":")
		if !ok {
			return fmt.Errorf("%q: want SRC:DST", a)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		files = append(files, ociimage.File{Path: dst, Mode: 0o755, Data: data})
	}
	epoch := sourceDateEpoch()
	layer, err := ociimage.FilesLayer(files, epoch)
	if err != nil {
		return err
	}
	cfg := ociimage.Config{Epoch: epoch}
	if *entrypoint != "" {
		cfg.Entrypoint = []string{*entrypoint}
	}
	img, err := ociimage.Image([]v1.Layer{layer}, cfg)
	if err != nil {
		return err
	}
	return writeImage(fs.Arg(0), img, *ref)
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH, or 0: the time every image file and
// config says it was made, so that two builds are identical.
func sourceDateEpoch() time.Time {
	var s int64
	fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), &s)
	return time.Unix(s, 0).UTC()
}

// writeImage writes img as an OCI layout tar to out (through a temporary file
// renamed into place, so that a failed run leaves no partial image) and
// prints its manifest digest.
func writeImage(out string, img v1.Image, ref string) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".imsbuild-image-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	digest, err := ociimage.WriteLayout(tmp, img, ref)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	fmt.Println(digest)
	return nil
}
