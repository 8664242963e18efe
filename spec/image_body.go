package spec

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// decodeImageBody decodes the rest of an image once every image's name is known.
func (l *loader) decodeImageBody(d *imageDecl) {
	img, c := d.img, d.content
	img.KernelFileName, img.InitrdFileName = "vmlinuz", "initrd"
	if img.Arch == "aarch64" {
		img.KernelFileName = "Image" // as IMS names an aarch64 kernel
	}
	img.Squashfs = Squashfs{Compression: "zstd", BlockSize: 1 << 20}
	a := l.attrs(c.Attributes, l.ctx)
	l.fileName(a, "kernel_file_name", &img.KernelFileName)
	l.fileName(a, "initrd_file_name", &img.InitrdFileName)
	// An empty value is none of its own: the root's file or the parent's
	// boot_parameters are packed then (see pack.Options.KernelParameters).
	d.kpSet = a.str("kernel_parameters", &img.KernelParameters) != nil && img.KernelParameters != ""
	if attr := a.strs("ca_certificates", &img.CACertificates); attr != nil {
		for i, pem := range img.CACertificates {
			if !strings.Contains(pem, "-----BEGIN CERTIFICATE-----") {
				l.errorf(elemRange(attr, i), "Invalid CA certificate",
					"Element %d of ca_certificates is not a PEM certificate (-----BEGIN CERTIFICATE-----); use file(\"ca.pem\").", i)
			}
		}
	}
	a.boolean("debug_on_failure", &img.DebugOnFailure)
	a.boolean("cache_interactive", &img.CacheInteractive)
	normalize := true
	a.boolean("normalize", &normalize)
	img.SkipNormalize = !normalize
	if b := l.single(c.Blocks, "squashfs"); b != nil {
		l.decodeSquashfs(b, &img.Squashfs)
	}
	for _, b := range c.Blocks.OfType("customize") {
		if cz, ok := l.decodeCustomize(b); ok {
			img.Customize = append(img.Customize, cz)
		}
	}
	if b := l.single(c.Blocks, "interactive"); b != nil {
		img.Interactive = l.decodeInteractive(b)
	}
}

// fileName decodes a plain file name (no directory).
func (l *loader) fileName(a attrs, name string, dst *string) {
	var s string
	attr := a.str(name, &s)
	if attr == nil {
		return
	}
	if s == "" || s == "." || s == ".." || strings.Contains(s, "/") {
		l.errorf(attr.Expr.Range(), "Invalid "+name, "%q is not a file name; use a name without a directory, like \"vmlinuz\".", s)
		return
	}
	*dst = s
}

// elemRange is the range of element i of a list literal, or the whole
// expression when it is not a literal.
func elemRange(attr *hcl.Attribute, i int) hcl.Range {
	if exprs, diags := hcl.ExprList(attr.Expr); !diags.HasErrors() && i < len(exprs) {
		return exprs[i].Range()
	}
	return attr.Expr.Range()
}

var compressions = []string{"zstd", "xz", "gzip", "lz4", "lzo"}

// levelRanges are the -Xcompression-level ranges mksquashfs accepts; a
// compressor without one takes no level.
var levelRanges = map[string][2]int{"zstd": {1, 22}, "gzip": {1, 9}, "lzo": {1, 9}}

func (l *loader) decodeSquashfs(b *hcl.Block, sq *Squashfs) {
	c := l.content(b.Body, squashfsSchema)
	a := l.attrs(c.Attributes, l.ctx)
	compOK := c.Attributes["compression"] == nil || a.oneOf("compression", &sq.Compression, compressions...) != nil
	if attr := a.integer("level", &sq.Level); attr != nil && compOK {
		r, ok := levelRanges[sq.Compression]
		switch {
		case !ok && sq.Level != 0:
			l.errorf(attr.Expr.Range(), "Invalid compression level",
				"%s compression takes no level in mksquashfs; remove level.", sq.Compression)
		case ok && (sq.Level < r[0] || sq.Level > r[1]):
			l.errorf(attr.Expr.Range(), "Invalid compression level",
				"The %s compression level must be between %d and %d, got %d.", sq.Compression, r[0], r[1], sq.Level)
		}
	}
	var bs string
	if attr := a.str("block_size", &bs); attr != nil {
		n, err := parseBlockSize(bs)
		if err != nil {
			l.errorf(attr.Expr.Range(), "Invalid block size", "%s.", capitalize(err.Error()))
		} else {
			sq.BlockSize = n
		}
	}
	a.strs("exclude", &sq.Exclude)
}

// ParseSize parses a byte size such as "1M", "128K", "50G", "2TiB" or
// "131072" (K, M, G, T are powers of 1024, with optional "iB" or "B").
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for i, unit := range []string{"K", "M", "G", "T"} {
		m := int64(1) << (10 * (i + 1))
		for _, suf := range []string{unit + "iB", unit + "B", unit, strings.ToLower(unit)} {
			if strings.HasSuffix(t, suf) {
				t, mult = strings.TrimSuffix(t, suf), m
				break
			}
		}
		if mult != 1 {
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size like \"1M\", \"128K\" or \"131072\"", s)
	}
	return n * mult, nil
}

// parseBlockSize parses a squashfs block size; mksquashfs needs a power of
// two between 4K and 1M.
func parseBlockSize(s string) (int64, error) {
	n, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n < 4<<10 || n > 1<<20 || n&(n-1) != 0 {
		return 0, fmt.Errorf("the squashfs block size must be a power of two between 4K and 1M, got %q (%d bytes)", s, n)
	}
	return n, nil
}

func (l *loader) decodeCustomize(b *hcl.Block) (Customize, bool) {
	cz := Customize{Jail: true, DeclRange: b.DefRange}
	c := l.content(b.Body, customizeSchema)
	a := l.attrs(c.Attributes, l.ctx)
	a.path("script", &cz.Script)
	a.str("inline", &cz.Inline)
	if s, i := c.Attributes["script"], c.Attributes["inline"]; s != nil && i != nil {
		l.errorf(i.NameRange, "Conflicting customize script",
			"This customize block already has script at %s; use either script or inline, or two customize blocks.", posString(s.Range))
	}
	fileBlocks := c.Blocks.OfType("file")
	cz.Files = l.decodeFiles(c.Attributes["files"], fileBlocks)
	if c.Attributes["script"] == nil && c.Attributes["inline"] == nil && c.Attributes["files"] == nil && len(fileBlocks) == 0 {
		l.errorf(b.TypeRange, "Empty customize block", "A customize block needs a script, inline text, files or file blocks.")
	}
	if attr := a.strMap("env", &cz.Env); attr != nil {
		for _, k := range keys(cz.Env) {
			if !validEnvName(k) || k == "" {
				l.errorf(attr.Expr.Range(), "Invalid environment variable name", "%q is not a valid environment variable name.", k)
			}
		}
	}
	jail := a.boolean("jail", &cz.Jail)
	a.boolean("network", &cz.Network)
	a.duration("timeout", &cz.Timeout)
	if attr := a.str("builder_image", &cz.BuilderImage); attr != nil && cz.Jail {
		subject := attr.Expr.Range()
		if jail != nil {
			subject = jail.Expr.Range()
		}
		l.errorf(subject, "Builder image needs jail = false",
			"builder_image runs the script in that OCI image with the image root at /mnt/image; a jailed script runs inside the image itself. Set jail = false.")
	}
	return cz, true
}

// evalString evaluates expr as a string.
func (l *loader) evalString(expr hcl.Expression) (string, bool) {
	attr := &hcl.Attribute{Name: "value", Expr: expr, Range: expr.Range()}
	var s string
	ok := l.attrs(hcl.Attributes{"value": attr}, l.ctx).str("value", &s) != nil
	return s, ok
}

func (l *loader) decodeInteractive(b *hcl.Block) *Interactive {
	in := &Interactive{Listen: "127.0.0.1:0", Timeout: 2 * time.Hour, Jail: true}
	c := l.content(b.Body, interactiveSchema)
	a := l.attrs(c.Attributes, l.ctx)
	if attr := a.strs("public_keys", &in.PublicKeys); attr != nil {
		if len(in.PublicKeys) == 0 {
			l.errorf(attr.Expr.Range(), "No public keys", "interactive needs at least one SSH public key, like [file(\"~/.ssh/id_ed25519.pub\")].")
		}
		for i, k := range in.PublicKeys {
			if len(strings.Fields(k)) < 2 {
				l.errorf(elemRange(attr, i), "Invalid public key",
					"Element %d of public_keys is not an SSH public key like \"ssh-ed25519 AAAA... user@host\".", i)
			}
		}
	}
	if attr := a.str("listen", &in.Listen); attr != nil {
		if _, port, err := net.SplitHostPort(in.Listen); err != nil || !validPort(port) {
			l.errorf(attr.Expr.Range(), "Invalid listen address", "%q is not a host:port address like \"127.0.0.1:0\".", in.Listen)
		}
	}
	a.duration("timeout", &in.Timeout)
	a.boolean("jail", &in.Jail)
	a.boolean("network", &in.Network)
	return in
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
