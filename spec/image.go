package spec

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// imageDecl is an image block between the decoding phases.
type imageDecl struct {
	block    *hcl.Block
	content  *hcl.BodyContent
	img      *Image
	nameOK   bool           // Name evaluated without error
	archOK   bool           // Arch known
	archSet  bool           // arch given explicitly
	kpSet    bool           // kernel_parameters not empty (given or inherited)
	fromAttr *hcl.Attribute // the from argument, for cycle diagnostics
}

// imageSources are the arguments of which an image needs exactly one.
var imageSources = []string{"recipe", "from", "import"}

func (l *loader) decodeImages() {
	labels := keys(l.imgBlocks)
	for _, label := range labels {
		l.declareImage(l.imgBlocks[label])
	}
	l.checkImageCycles()
	for _, label := range labels {
		l.inheritArch(l.images[label], 0)
	}
	l.ctx.Variables["image"] = l.imageObjects(nil)
	for _, label := range labels {
		l.decodeImageBody(l.images[label])
		l.cfg.Images[label] = l.images[label].img
	}
	for _, label := range labels {
		l.inheritKernelParameters(l.images[label], 0)
	}
}

// inheritKernelParameters gives an image made from a parent without
// kernel_parameters of its own the parent's (itself maybe inherited): they
// win over the child's /boot/kernel-parameters as they did for the parent.
func (l *loader) inheritKernelParameters(d *imageDecl, depth int) {
	if d.kpSet || d.img.From == "" || depth > len(l.images) {
		return
	}
	p := l.images[d.img.From]
	if p == nil {
		return
	}
	l.inheritKernelParameters(p, depth+1)
	d.img.KernelParameters, d.kpSet = p.img.KernelParameters, p.kpSet
}

// declareImage decodes what other blocks may refer to: name, arch and the
// image's source.
func (l *loader) declareImage(b *hcl.Block) {
	label := b.Labels[0]
	img := &Image{Label: label, Name: label, DeclRange: b.DefRange}
	d := &imageDecl{block: b, img: img, nameOK: true, archOK: true}
	l.images[label] = d
	d.content = l.content(b.Body, imageSchema)
	a := l.attrs(d.content.Attributes, l.ctx)
	if attr := d.content.Attributes["name"]; attr != nil {
		d.nameOK = a.str("name", &img.Name) != nil
		if d.nameOK && strings.TrimSpace(img.Name) == "" {
			l.errorf(attr.Expr.Range(), "Invalid name", "The image name must not be empty.")
		}
	}
	if d.content.Attributes["arch"] != nil {
		d.archSet = true
		d.archOK = a.oneOf("arch", &img.Arch, arches...) != nil
	}

	var given []*hcl.Attribute
	for _, name := range imageSources {
		if attr := d.content.Attributes[name]; attr != nil {
			given = append(given, attr)
		}
	}
	switch {
	case len(given) == 0:
		l.errorf(b.LabelRanges[0], "Missing image source",
			"Image %q needs exactly one of recipe = recipe.<name>, from = image.<label> or import = \"path-or-url\".", label)
		return
	case len(given) > 1:
		for _, attr := range given[1:] {
			l.errorf(attr.NameRange, "Conflicting image sources",
				"Image %q already has %s at %s; an image needs exactly one of recipe, from and import.",
				label, given[0].Name, posString(given[0].Range))
		}
		return
	}
	switch attr := given[0]; attr.Name {
	case "recipe":
		img.Recipe, _ = l.ref(attr.Expr, "recipe", "recipe")
	case "from":
		if name, ok := l.ref(attr.Expr, "image", "from"); ok {
			img.From, d.fromAttr = name, attr
		}
	case "import":
		a.pathOrURL("import", &img.Import)
	}
}

// inheritArch gives an image without an explicit arch the arch of its
// recipe or parent image, or x86_64.
func (l *loader) inheritArch(d *imageDecl, depth int) {
	if d.archSet || d.img.Arch != "" {
		return
	}
	img := d.img
	switch {
	case img.Recipe != "":
		if r := l.cfg.Recipes[img.Recipe]; r != nil {
			img.Arch = r.Arch
		}
	case img.From != "" && depth <= len(l.images):
		p := l.images[img.From]
		l.inheritArch(p, depth+1)
		img.Arch, d.archOK = p.img.Arch, p.archOK
	}
	if img.Arch == "" {
		img.Arch = "x86_64"
	}
}
