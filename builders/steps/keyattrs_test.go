package steps

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/spec"
)

// TestKeyAttrsJSONUnchanged pins the attributes' JSON to what the keys
// held when they were built from maps: a change here changes every
// existing key, which needs a new BuilderVersion.
func TestKeyAttrsJSONUnchanged(t *testing.T) {
	full := &spec.Image{Name: "n", Arch: "x86_64", Recipe: "node", KernelFileName: "vmlinuz", InitrdFileName: "initrd",
		KernelParameters: "console=ttyS0",
		Squashfs:         spec.Squashfs{Compression: "zstd", Level: 3, BlockSize: 1 << 20, Exclude: []string{"tmp/*"}}}
	min := &spec.Image{Name: "n", Arch: "x86_64", KernelFileName: "vmlinuz", InitrdFileName: "initrd", Squashfs: spec.Squashfs{Compression: "zstd"}}
	r := &spec.Recipe{Name: "node", Arch: "x86_64", Profiles: []string{"a"}, LinuxDistribution: "sles15", Template: map[string]string{"release": "bookworm"}}
	repos := []*spec.Repository{{Name: "debian", Type: "apt", Distribution: "bookworm"}, {Name: "zz", Type: "rpm-md"}}
	for _, tc := range []struct {
		name  string
		attrs any
		want  string
	}{
		{"import remote interactive", imageAttrs(full, KindImport, true, true),
			`{"arch":"x86_64","import_remote":true,"initrd_file_name":"initrd","interactive":true,"kernel_file_name":"vmlinuz","kernel_parameters":"console=ttyS0","name":"n","squashfs":{"block_size":1048576,"compression":"zstd","exclude":["tmp/*"],"level":3}}`},
		{"kiwi", imageAttrs(full, KindKiwi, false, false),
			`{"arch":"x86_64","initrd_file_name":"initrd","kernel_file_name":"vmlinuz","kernel_parameters":"console=ttyS0","name":"n","recipe":"node","squashfs":{"block_size":1048576,"compression":"zstd","exclude":["tmp/*"],"level":3}}`},
		{"customize minimal", imageAttrs(min, KindCustomize, false, false),
			`{"arch":"x86_64","initrd_file_name":"initrd","kernel_file_name":"vmlinuz","kernel_parameters":"","name":"n","squashfs":{"block_size":0,"compression":"zstd","exclude":null,"level":0}}`},
		{"prepare", recipeAttrs(r, repos),
			`{"arch":"x86_64","linux_distribution":"sles15","profiles":["a"],"recipe":"node","repository.debian":"apt bookworm","repository.zz":"rpm-md ","template":{"release":"bookworm"}}`},
		{"prepare minimal", recipeAttrs(&spec.Recipe{Name: "node", Arch: "x86_64"}, nil),
			`{"arch":"x86_64","linux_distribution":"","profiles":null,"recipe":"node","template":null}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.attrs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("attrs = %s\nwant    %s", got, tc.want)
			}
		})
	}
}

// specTypes are the spec types whose fields feed image and recipe steps.
var specTypes = []any{spec.Image{}, spec.Squashfs{}, spec.Customize{}, spec.FileCopy{}, spec.Recipe{}, spec.Repository{}, spec.Interactive{}}

// keyStructs are the attribute structs whose `spec` tags map spec fields.
var keyStructs = []any{imageKeyAttrs{}, squashfsKeyAttrs{}, recipeKeyAttrs{}}

// specTags returns "Type.Field" → the key struct field that holds it.
func specTags() map[string]string {
	out := map[string]string{}
	for _, k := range keyStructs {
		rt := reflect.TypeOf(k)
		for f := range rt.Fields() {
			tag := f.Tag.Get("spec")
			if tag == "" {
				continue
			}
			for name := range strings.SplitSeq(tag, ",") {
				out[name] = rt.Name() + "." + f.Name
			}
		}
	}
	return out
}

// TestEverySpecFieldHasAKeyDecision fails when a spec field that feeds a
// step is neither in a key nor listed as not changing the result: a new
// field forgotten in the key would silently reuse old results.
func TestEverySpecFieldHasAKeyDecision(t *testing.T) {
	tags := specTags()
	fields := map[string]bool{}
	for _, v := range specTypes {
		rt := reflect.TypeOf(v)
		for f := range rt.Fields() {
			name := rt.Name() + "." + f.Name
			fields[name] = true
			_, tagged := tags[name]
			_, elsewhere := keyedElsewhere[name]
			reason, unkeyed := notKeyed[name]
			n := 0
			for _, b := range []bool{tagged, elsewhere, unkeyed} {
				if b {
					n++
				}
			}
			switch {
			case n == 0:
				t.Errorf("spec field %s has no key decision: if it can change what a step builds, add it to a key "+
					"struct in builders/steps/keyattrs.go (a `spec:%q` tag; omitempty keeps existing keys when the field is unset, else bump engine.BuilderVersion) "+
					"or to keyedElsewhere with where the key holds it; if it cannot, add it to notKeyed with the reason", name, name)
			case n > 1:
				t.Errorf("spec field %s has more than one key decision (tag %v, keyedElsewhere %v, notKeyed %v): keep one", name, tagged, elsewhere, unkeyed)
			case unkeyed && strings.TrimSpace(reason) == "":
				t.Errorf("spec field %s is in notKeyed without a reason", name)
			}
		}
	}
	// A decision about a field that is gone is stale.
	for _, m := range []map[string]string{tags, keyedElsewhere, notKeyed} {
		for name := range m {
			if !fields[name] {
				t.Errorf("key decision for %s, which is not a field of %v: remove it or fix the name", name, specTypes)
			}
		}
	}
}

// TestKeyedFieldsChangeTheAttrs checks that the tags do not lie: changing
// each tagged field of an image or recipe changes its key attributes.
func TestKeyedFieldsChangeTheAttrs(t *testing.T) {
	baseImage := func() *spec.Image {
		return &spec.Image{Name: "n", Arch: "x86_64", Recipe: "node", KernelFileName: "vmlinuz", InitrdFileName: "initrd",
			Squashfs: spec.Squashfs{Compression: "zstd", Level: 3, BlockSize: 1 << 20, Exclude: []string{"tmp"}}}
	}
	baseRecipe := func() (*spec.Recipe, []*spec.Repository) {
		return &spec.Recipe{Name: "node", Arch: "x86_64", Profiles: []string{"a"}, Template: map[string]string{"k": "v"}, Repositories: []string{"debian"}},
			// "changed" is declared but not named: naming it changes the key.
			[]*spec.Repository{{Name: "debian", Type: "apt", Distribution: "bookworm"}, {Name: "changed", Type: "rpm-md"}}
	}
	encode := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	imageKey := func(img *spec.Image) string {
		return encode(imageAttrs(img, KindKiwi, img.Interactive != nil, false))
	}
	recipeKey := func(r *spec.Recipe, repos []*spec.Repository) string {
		// The engine passes the repositories the recipe names.
		var named []*spec.Repository
		for _, rp := range repos {
			if slices.Contains(r.Repositories, rp.Name) {
				named = append(named, rp)
			}
		}
		return encode(recipeAttrs(r, named))
	}
	for name := range specTags() {
		typ, field, _ := strings.Cut(name, ".")
		t.Run(name, func(t *testing.T) {
			switch typ {
			case "Image", "Squashfs":
				img := baseImage()
				target := reflect.ValueOf(img).Elem()
				if typ == "Squashfs" {
					target = target.FieldByName("Squashfs")
				}
				before := imageKey(img)
				changeField(t, target.FieldByName(field))
				if after := imageKey(img); after == before {
					t.Errorf("changing %s left the attributes %s", name, after)
				}
			case "Recipe", "Repository":
				r, repos := baseRecipe()
				before := recipeKey(r, repos)
				if typ == "Recipe" {
					changeField(t, reflect.ValueOf(r).Elem().FieldByName(field))
				} else {
					changeField(t, reflect.ValueOf(repos[0]).Elem().FieldByName(field))
					r.Repositories = []string{repos[0].Name}
				}
				if after := recipeKey(r, repos); after == before {
					t.Errorf("changing %s left the attributes %s", name, after)
				}
			default:
				t.Fatalf("no mutation test for %s: extend TestKeyedFieldsChangeTheAttrs", name)
			}
		})
	}
}

// changeField changes v to a different value of its type.
func changeField(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "-changed")
	case reflect.Int, reflect.Int64:
		if v.Type() == reflect.TypeFor[time.Duration]() {
			v.SetInt(v.Int() + int64(time.Second))
		} else {
			v.SetInt(v.Int() + 1)
		}
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.ValueOf("changed").Convert(v.Type().Elem())))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range v.MapKeys() {
			m.SetMapIndex(k, v.MapIndex(k))
		}
		m.SetMapIndex(reflect.ValueOf("changed"), reflect.ValueOf("changed"))
		v.Set(m)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.Set(reflect.Zero(v.Type()))
		}
	case reflect.Struct:
		// A nested struct is tested through its own fields' tags.
		changeField(t, v.Field(0))
	default:
		t.Fatalf("cannot mutate a %s", v.Type())
	}
}
