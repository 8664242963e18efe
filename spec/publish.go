package spec

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/imsbuild/imsbuild/ims"
)

// checkIMSLinks reports images and recipes an ims publish registers that no
// s3 (or, for images, dir) publish of the build writes: IMS records link to
// published manifests and archives.
func (l *loader) checkIMSLinks() {
	images, recipes := map[string]bool{}, map[string]bool{}
	for _, p := range l.cfg.Publishes {
		if p.Kind == "s3" || p.Kind == "dir" {
			for _, i := range p.Images {
				images[i] = true
			}
		}
		if p.Kind == "s3" {
			for _, r := range p.Recipes {
				recipes[r] = true
			}
		}
	}
	for _, p := range l.cfg.Publishes {
		if p.Kind != "ims" {
			continue
		}
		for _, i := range p.Images {
			if !images[i] {
				l.errorf(p.DeclRange, "Image not published for IMS",
					"publish \"ims\" %q registers image.%s, but no publish \"s3\" or \"dir\" of this build writes its manifest; add image.%s to one.", p.Name, i, i)
			}
		}
		for _, r := range p.Recipes {
			if !recipes[r] {
				l.errorf(p.DeclRange, "Recipe not published for IMS",
					"publish \"ims\" %q registers recipe.%s, but no publish \"s3\" of this build uploads it; add recipes = [recipe.%s] to one.", p.Name, r, r)
			}
		}
	}
	l.checkIMSDistributions()
}

// checkIMSDistributions reports recipes an ims publish registers whose
// linux_distribution IMS would refuse (its RecipeRecord takes only a few
// values, and requires one). Recipes only built, or only uploaded, may say
// anything, such as "debian".
func (l *loader) checkIMSDistributions() {
	allowed := ims.LinuxDistributions()
	checked := map[string]bool{}
	for _, p := range l.cfg.Publishes {
		if p.Kind != "ims" {
			continue
		}
		for _, name := range p.Recipes {
			r := l.cfg.Recipes[name]
			if r == nil || checked[name] {
				continue
			}
			checked[name] = true
			attr, given := l.recDists[name]
			switch {
			case slices.Contains(allowed, r.LinuxDistribution):
			case given && attr == nil: // did not evaluate; reported already
			case given:
				l.errorf(attr.Expr.Range(), "Invalid linux_distribution for IMS",
					"%q is not a linux_distribution IMS accepts, and publish \"ims\" %q (%s) registers recipe.%s with IMS; use one of %s.%s",
					r.LinuxDistribution, p.Name, posString(p.DeclRange), name, quoteList(allowed), didYouMean(r.LinuxDistribution, allowed))
			default:
				l.errorf(r.DeclRange, "Missing linux_distribution",
					"publish \"ims\" %q (%s) registers recipe.%s with IMS, which requires a linux_distribution; add linux_distribution = one of %s.",
					p.Name, posString(p.DeclRange), name, quoteList(allowed))
			}
		}
	}
}

// decodePublishes decodes the publish blocks in source order.
func (l *loader) decodePublishes() {
	seen := map[string]*hcl.Block{}
	for _, b := range l.pubBlocks {
		kind, name := b.Labels[0], b.Labels[1]
		if _, ok := publishAttrs[kind]; !ok {
			l.errorf(b.LabelRanges[0], "Unsupported publish kind",
				"%q is not a publish kind; use one of %s.%s", kind, quoteList(keys(publishAttrs)), didYouMean(kind, keys(publishAttrs)))
			continue
		}
		if !l.validName(b, 1) {
			continue
		}
		id := kind + "." + name
		if prev, ok := seen[id]; ok {
			l.duplicate(b, prev, fmt.Sprintf("publish %q %q", kind, name), "Publish names must be unique per kind")
			continue
		}
		seen[id] = b
		if p := l.decodePublish(b, kind, name); p != nil {
			l.cfg.Publishes = append(l.cfg.Publishes, p)
		}
	}
	l.checkIMSLinks()
}

func (l *loader) decodePublish(b *hcl.Block, kind, name string) *Publish {
	p := &Publish{Kind: kind, Name: name, DeclRange: b.DefRange}
	c := l.content(b.Body, publishSchema(kind))
	if attr := c.Attributes["images"]; attr != nil {
		imgs, ok := l.refList(attr, "image")
		p.Images = imgs
		if ok && len(imgs) == 0 {
			l.errorf(attr.Expr.Range(), "No images to publish", "publish %q %q needs at least one image, like images = [image.base].", kind, name)
		}
	}
	if attr := c.Attributes["recipes"]; attr != nil {
		p.Recipes, _ = l.refList(attr, "recipe")
		if kind != "s3" && kind != "ims" {
			l.errorf(attr.NameRange, "Recipes not published here",
				"publish %q cannot publish recipes; IMS recipes go to S3 (publish \"s3\", bucket ims) and are registered with publish \"ims\".", kind)
		}
	}
	if c.Attributes["images"] == nil && c.Attributes["recipes"] == nil {
		l.errorf(b.DefRange, "Nothing to publish",
			"publish %q %q needs images = [image.<label>, …] or recipes = [recipe.<name>, …].", kind, name)
	}

	// The other arguments may use image.name, image.label and image.arch
	// of the image being published; they are evaluated for the first one.
	var self *Image
	if len(p.Images) > 0 {
		self = l.images[p.Images[0]].img
	}
	a := l.attrs(c.Attributes, l.publishCtx(self))
	a.self = true
	switch kind {
	case "dir":
		a.path("path", &p.Path)
	case "s3":
		p.Bucket = "boot-images"
		l.endpoint(a, &p.Endpoint)
		a.str("region", &p.Region)
		if attr := a.str("bucket", &p.Bucket); attr != nil && p.Bucket == "" {
			l.errorf(attr.Expr.Range(), "Invalid bucket", "The bucket name must not be empty.")
		}
		a.str("prefix", &p.Prefix)
		a.boolean("path_style", &p.PathStyle)
		a.path("ca_bundle", &p.CABundle)
	case "oci":
		l.ociRepos(a, p)
		a.strs("tags", &p.Tags)
		a.boolean("insecure", &p.Insecure)
	case "ims":
		l.endpoint(a, &p.Endpoint)
		a.str("token", &p.Token)
		a.path("ca_bundle", &p.CABundle)
	}
	return p
}

// publishCtx is the evaluation context of a publish block for image self.
func (l *loader) publishCtx(self *Image) *hcl.EvalContext {
	ctx := l.ctx.NewChild()
	ctx.Variables = map[string]cty.Value{"image": l.imageObjects(self)}
	return ctx
}

// ociRepos evaluates repository once per image.
func (l *loader) ociRepos(a attrs, p *Publish) {
	attr := a.str("repository", &p.Repository)
	if attr == nil {
		return
	}
	if isURL(p.Repository) || p.Repository == "" || strings.ContainsAny(p.Repository, " \t\n") {
		l.errorf(attr.Expr.Range(), "Invalid repository",
			"%q is not an OCI repository like \"registry.example/hpc/compute\" (no scheme).", p.Repository)
		return
	}
	p.ImageRepos = map[string]string{}
	for i, label := range p.Images {
		repo := p.Repository
		if i > 0 {
			b := l.attrs(a.m, l.publishCtx(l.images[label].img))
			b.self = true
			if b.str("repository", &repo) == nil {
				continue
			}
		}
		p.ImageRepos[label] = repo
	}
}

// endpoint decodes an http(s) URL.
func (l *loader) endpoint(a attrs, dst *string) {
	var s string
	attr := a.str("endpoint", &s)
	if attr == nil {
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.errorf(attr.Expr.Range(), "Invalid endpoint", "%q is not an http:// or https:// URL.", s)
		return
	}
	*dst = s
}
