package pack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/imsbuild/imsbuild/internal/environ"
	"github.com/imsbuild/imsbuild/internal/tail"
)

// DefaultExcludes returns the kiwi leftovers never packed into a rootfs
// (mksquashfs -wildcards patterns, relative to the root).
func DefaultExcludes() []string {
	return []string{"image", ".profile", ".kconfig", "run/*", "tmp/*", ".buildenv", "var/cache/kiwi"}
}

// levelRange gives, per compressor, the valid -Xcompression-level range and
// the level used when Options.Level is 0 (0: mksquashfs' own default).
func levelRange(comp string) (min, max, def int, ok bool) {
	switch comp {
	case "zstd":
		return 1, 22, 3, true
	case "gzip", "lzo":
		return 1, 9, 0, true
	case "xz", "lz4":
		return 0, 0, 0, true
	}
	return 0, 0, 0, false
}

// mksquashfsArgs returns the options after "mksquashfs root out".
func mksquashfsArgs(o Options) ([]string, error) {
	comp := o.Compression
	if comp == "" {
		comp = "zstd"
	}
	lmin, lmax, ldef, ok := levelRange(comp)
	if !ok {
		return nil, fmt.Errorf("unknown compression %q (want zstd, xz, gzip, lz4 or lzo)", comp)
	}
	level := o.Level
	if level == 0 {
		level = ldef
	}
	if level != 0 && (level < lmin || level > lmax) {
		if lmax == 0 {
			return nil, fmt.Errorf("compression %s takes no level (got %d)", comp, level)
		}
		return nil, fmt.Errorf("compression %s level %d out of range %d..%d", comp, level, lmin, lmax)
	}
	bs := o.BlockSize
	if bs == 0 {
		bs = 1 << 20
	}
	if bs < 4<<10 || bs > 1<<20 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("block size %d is not a power of two between 4K and 1M", bs)
	}
	if o.SourceDateEpoch < 0 || o.SourceDateEpoch > math.MaxUint32 {
		return nil, fmt.Errorf("source date epoch %d out of range 0..%d", o.SourceDateEpoch, uint32(math.MaxUint32))
	}
	epoch := strconv.FormatInt(o.SourceDateEpoch, 10)
	args := []string{"-noappend", "-reproducible", "-mkfs-time", epoch, "-all-time", epoch, "-comp", comp}
	if level != 0 {
		args = append(args, "-Xcompression-level", strconv.Itoa(level))
	}
	args = append(args, "-b", strconv.FormatInt(bs, 10), "-no-progress", "-wildcards", "-e")
	args = append(args, DefaultExcludes()...)
	for _, e := range o.Exclude {
		e = strings.TrimLeft(e, "/")
		if e == "" || strings.HasPrefix(e, "-") {
			return nil, fmt.Errorf("bad exclude pattern %q", e)
		}
		args = append(args, e)
	}
	return args, nil
}

// mksquashfs runs the tool; its statistics go to verbose (nil: log) and a
// summary line of them to log, and the tail of its stderr into the error.
func mksquashfs(ctx context.Context, root, out string, args, env []string, log, verbose io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	summarize := verbose != nil
	if !summarize {
		verbose = log
	}
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return err
	}
	stderr := tail.New(30)
	stats := tail.New(64) // the statistics are some 30 lines
	cmd := exec.CommandContext(ctx, "mksquashfs", append([]string{root, out}, args...)...)
	// mksquashfs refuses SOURCE_DATE_EPOCH together with -mkfs-time and
	// -all-time, which carry the epoch explicitly.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, environ.Without(env, "SOURCE_DATE_EPOCH")...)
	cmd.Stdout = io.MultiWriter(verbose, stats)
	cmd.Stderr = io.MultiWriter(log, stderr)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mksquashfs: %w", ctx.Err())
		}
		if msg := stderr.Summary(5); msg != "" {
			return fmt.Errorf("mksquashfs: %w: %s", err, msg)
		}
		return fmt.Errorf("mksquashfs: %w", err)
	}
	if summarize {
		if s := statsSummary(stats.Lines()); s != "" {
			fmt.Fprintln(log, s)
		}
	}
	return nil
}

// statsSummary condenses mksquashfs' statistics block into one line:
// "mksquashfs: zstd compressed, 1.21 Mbytes, 45.12% of uncompressed
// filesystem size (2.68 Mbytes), 123 files, 45 directories".
func statsSummary(stats []string) string {
	var parts []string
	for _, line := range stats {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "Exportable Squashfs"):
			for _, f := range strings.Split(line, ", ") {
				if strings.HasSuffix(f, " compressed") {
					parts = append(parts, f)
				}
			}
		case strings.HasPrefix(line, "Filesystem size "):
			size := strings.TrimPrefix(line, "Filesystem size ")
			if _, mb, ok := strings.Cut(size, "("); ok {
				size = strings.TrimSuffix(mb, ")")
			}
			parts = append(parts, size)
		case strings.Contains(line, "% of uncompressed filesystem size"):
			parts = append(parts, line)
		case strings.HasPrefix(line, "Number of files "):
			parts = append(parts, strings.TrimPrefix(line, "Number of files ")+" files")
		case strings.HasPrefix(line, "Number of directories "):
			parts = append(parts, strings.TrimPrefix(line, "Number of directories ")+" directories")
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "mksquashfs: " + strings.Join(parts, ", ")
}

// ToolVersion returns the mksquashfs version line, part of every pack key.
func ToolVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "mksquashfs", "-version").Output()
	if err != nil {
		return "", fmt.Errorf("mksquashfs -version: %w", err)
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	if len(bytes.TrimSpace(line)) == 0 {
		return "", fmt.Errorf("mksquashfs -version: no output")
	}
	return string(bytes.TrimSpace(line)), nil
}

// ErrNotSquashfs is a file without a squashfs superblock.
var ErrNotSquashfs = errors.New("not a squashfs")

// MkfsTime returns the creation time a squashfs records in its superblock
// (-mkfs-time): for one made by Pack, its SOURCE_DATE_EPOCH. A child image
// takes its epoch from its parent's rootfs this way, so the epoch follows
// from content that its key already holds.
func MkfsTime(r io.Reader) (int64, error) {
	var sb [12]byte // magic, inode count, mkfs_time (little endian)
	if _, err := io.ReadFull(r, sb[:]); err != nil {
		return 0, fmt.Errorf("squashfs superblock: %w", err)
	}
	if string(sb[:4]) != "hsqs" {
		return 0, fmt.Errorf("squashfs superblock: magic %q: %w", sb[:4], ErrNotSquashfs)
	}
	return int64(binary.LittleEndian.Uint32(sb[8:])), nil
}
