package spec

import (
	"github.com/zclconf/go-cty/cty"
)

// declareNames puts the repository and recipe objects (repository.x.name,
// recipe.x.name) into the evaluation context.
func (l *loader) declareNames() {
	l.ctx.Variables["repository"] = nameObjects(l.repoBlocks)
	l.ctx.Variables["recipe"] = nameObjects(l.recBlocks)
}

func nameObjects[V any](m map[string]V) cty.Value {
	objs := map[string]cty.Value{}
	for name := range m {
		objs[name] = cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(name)})
	}
	return cty.ObjectVal(objs)
}

// imageObjects is the value of `image`: one object per label with its name,
// label and arch; self, when not nil, adds the attributes of the image being
// published at the top level (image.name inside a publish block).
func (l *loader) imageObjects(self *Image) cty.Value {
	objs := map[string]cty.Value{}
	for label, d := range l.images {
		objs[label] = imageObject(d)
	}
	if self != nil {
		for k, v := range imageObject(l.images[self.Label]).AsValueMap() {
			objs[k] = v
		}
	}
	return cty.ObjectVal(objs)
}

func imageObject(d *imageDecl) cty.Value {
	str := func(s string, ok bool) cty.Value {
		if !ok {
			return cty.UnknownVal(cty.String)
		}
		return cty.StringVal(s)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"name":  str(d.img.Name, d.nameOK),
		"label": cty.StringVal(d.img.Label),
		"arch":  str(d.img.Arch, d.archOK),
	})
}
