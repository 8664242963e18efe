package spec

// arches are the architectures images and recipes may have.
var arches = []string{"x86_64", "aarch64"}

// recipeTypes are the recipe formats.
var recipeTypes = []string{"kiwi-ng"}

func (l *loader) decodeRecipes() {
	for _, name := range keys(l.recBlocks) {
		b := l.recBlocks[name]
		r := &Recipe{Name: name, Type: "kiwi-ng", Arch: "x86_64", RequireDKMS: true, DeclRange: b.DefRange}
		c := l.content(b.Body, recipeSchema)
		a := l.attrs(c.Attributes, l.ctx)
		a.pathOrURL("source", &r.Source)
		a.oneOf("type", &r.Type, recipeTypes...)
		a.oneOf("arch", &r.Arch, arches...)
		a.strs("profiles", &r.Profiles)
		if c.Attributes["linux_distribution"] != nil {
			l.recDists[name] = a.str("linux_distribution", &r.LinuxDistribution)
		}
		a.boolean("require_dkms", &r.RequireDKMS)
		a.strMap("template", &r.Template)
		a.str("builder_image", &r.BuilderImage)
		if attr := c.Attributes["repositories"]; attr != nil {
			r.Repositories, _ = l.refList(attr, "repository")
		}
		l.cfg.Recipes[name] = r
	}
}
