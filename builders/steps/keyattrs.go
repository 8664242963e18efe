package steps

import (
	"bytes"
	"encoding/json"

	"github.com/imsbuild/imsbuild/spec"
)

// The attributes of a key preimage are typed structs, one per kind of
// step, so that every spec field has a decision: it is in a key struct
// (its `spec` tag names the field), keyed elsewhere in the preimage
// (keyedElsewhere), or listed with the reason it cannot change a result
// (notKeyed). TestEverySpecFieldHasAKeyDecision walks the spec types and
// fails on a field with none: a forgotten output-affecting field would
// silently reuse an old result.
//
// The JSON of these structs is what the keys of earlier versions held as
// maps (the engine sorts the attributes' keys), so existing caches still
// hit. A field that would change existing keys needs a new
// BuilderVersion.

// imageKeyAttrs are the attributes of an image step (import, customize,
// kiwi). Fields are in the order of their JSON names, as the engine sorts
// them anyway.
type imageKeyAttrs struct {
	Arch string `json:"arch" spec:"Image.Arch"`
	// ImportRemote marks an import of published artifacts, taken as
	// published rather than repacked (import only).
	ImportRemote   bool   `json:"import_remote,omitempty"`
	InitrdFileName string `json:"initrd_file_name" spec:"Image.InitrdFileName"`
	// Interactive: an interactive block or --interactive opens an SSH
	// environment whose session changes the root.
	Interactive      bool   `json:"interactive,omitempty" spec:"Image.Interactive"`
	KernelFileName   string `json:"kernel_file_name" spec:"Image.KernelFileName"`
	KernelParameters string `json:"kernel_parameters" spec:"Image.KernelParameters"`
	Name             string `json:"name" spec:"Image.Name"`
	// NoNormalize is normalize = false: builders/normalize does not run
	// on the root before pack.
	NoNormalize bool             `json:"no_normalize,omitempty" spec:"Image.SkipNormalize"`
	Recipe      string           `json:"recipe,omitempty" spec:"Image.Recipe"` // kiwi only
	Squashfs    squashfsKeyAttrs `json:"squashfs" spec:"Image.Squashfs"`
}

type squashfsKeyAttrs struct {
	BlockSize   int64    `json:"block_size" spec:"Squashfs.BlockSize"`
	Compression string   `json:"compression" spec:"Squashfs.Compression"`
	Exclude     []string `json:"exclude" spec:"Squashfs.Exclude"`
	Level       int      `json:"level" spec:"Squashfs.Level"`
}

// imageAttrs returns the key attributes of image img. interactive and
// remote are decided by the engine (flags, the import URL); the recipe
// is keyed by kiwi images only.
func imageAttrs(img *spec.Image, kind string, interactive, remote bool) imageKeyAttrs {
	a := imageKeyAttrs{
		Arch:             img.Arch,
		ImportRemote:     kind == KindImport && remote,
		InitrdFileName:   img.InitrdFileName,
		Interactive:      interactive,
		KernelFileName:   img.KernelFileName,
		KernelParameters: img.KernelParameters,
		Name:             img.Name,
		NoNormalize:      img.SkipNormalize,
		Squashfs: squashfsKeyAttrs{
			BlockSize:   img.Squashfs.BlockSize,
			Compression: img.Squashfs.Compression,
			Exclude:     img.Squashfs.Exclude,
			Level:       img.Squashfs.Level,
		},
	}
	if kind == KindKiwi {
		a.Recipe = img.Recipe
	}
	return a
}

// recipeKeyAttrs are the attributes of a kiwi prepare step.
type recipeKeyAttrs struct {
	Arch              string            `json:"arch" spec:"Recipe.Arch"`
	LinuxDistribution string            `json:"linux_distribution" spec:"Recipe.LinuxDistribution"`
	Profiles          []string          `json:"profiles" spec:"Recipe.Profiles"`
	Recipe            string            `json:"recipe" spec:"Recipe.Name"`
	Template          map[string]string `json:"template" spec:"Recipe.Template"`
	// Repositories maps a repository's name to "<type> <distribution>";
	// each is the attribute "repository.<name>" (see MarshalJSON).
	Repositories map[string]string `json:"-" spec:"Recipe.Repositories,Repository.Name,Repository.Type,Repository.Distribution"`
}

// MarshalJSON writes the repositories as top-level "repository.<name>"
// attributes, as the keys of earlier versions did.
func (a recipeKeyAttrs) MarshalJSON() ([]byte, error) {
	type plain recipeKeyAttrs // without this method
	m, err := plainMap(plain(a))
	if err != nil {
		return nil, err
	}
	for name, v := range a.Repositories {
		m["repository."+name] = v
	}
	return json.Marshal(m)
}

func recipeAttrs(r *spec.Recipe, repos []*spec.Repository) recipeKeyAttrs {
	a := recipeKeyAttrs{
		Arch:              r.Arch,
		LinuxDistribution: r.LinuxDistribution,
		Profiles:          r.Profiles,
		Recipe:            r.Name,
		Template:          r.Template,
	}
	if len(repos) > 0 {
		a.Repositories = map[string]string{}
		for _, rp := range repos {
			a.Repositories[rp.Name] = rp.Type + " " + rp.Distribution
		}
	}
	return a
}

// plainMap returns v's JSON as a map, whose encoding sorts the keys.
func plainMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // a block size stays the integer it was
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// keyedElsewhere lists spec fields that enter a key outside the attribute
// structs, and where.
var keyedElsewhere = map[string]string{
	"Image.From":           "inputs.parent.<artifact>: the parent's output digests",
	"Image.Import":         "inputs.import: the content digest of the source",
	"Image.CACertificates": "inputs.ca_certificates[i] (image and kiwi prepare keys)",
	"Image.Customize":      "customize[i] (customizeKey)",

	"Customize.Script":       "customize[i].script: the file's digest",
	"Customize.Inline":       "customize[i].script: the text's digest",
	"Customize.Files":        "customize[i].files",
	"Customize.Env":          "customize[i].env",
	"Customize.Jail":         "customize[i].jail",
	"Customize.Network":      "customize[i].network",
	"Customize.Timeout":      "customize[i].timeout",
	"Customize.BuilderImage": "customize[i].builder_image: the manifest digest",

	"FileCopy.Dest":    "customize[i].files: the map key",
	"FileCopy.Source":  "customize[i].files: the file's digest",
	"FileCopy.Mode":    "customize[i].files: \" mode=\" after the digest",
	"FileCopy.HasMode": "customize[i].files: \" mode=\" only when set",
	"FileCopy.Owner":   "customize[i].files: \" owner=\" after the digest",

	"Recipe.Source":         "inputs.recipe: the digest of the recipe tree or archive",
	"Recipe.BuilderImage":   "tools.builder_image: the manifest digest (else tools.kiwi-ng)",
	"Repository.URL":        "inputs.repository.<name>.metadata when tracked; the recipe's own repository entries say where packages come from",
	"Repository.TrackRepos": "decides whether inputs.repository.<name>.metadata is in the key",
}

// notKeyed lists spec fields that cannot change a step's result, and why.
var notKeyed = map[string]string{
	"Image.Label":            "the block's name: a step is keyed by what it builds, not by what it is called (Name is the IMS name)",
	"Image.DebugOnFailure":   "opens a debug session only when the step fails, and a failed step stores nothing",
	"Image.CacheInteractive": "decides whether an interactive result is cached, not what it is",
	"Image.DeclRange":        "the block's position in the build files",

	"Customize.DeclRange": "the block's position in the build files",

	// An interactive result comes from a person's session; it is cached
	// only when cache_interactive says the person's work is repeatable.
	"Interactive.PublicKeys": "who may log in to the session",
	"Interactive.Listen":     "where the session listens",
	"Interactive.Timeout":    "how long the session may wait",
	"Interactive.Jail":       "how the person reaches the root, not what the build does",
	"Interactive.Network":    "what the person may reach, not what the build does",

	"Recipe.Type":        "always kiwi-ng (spec rejects others); it labels IMS records",
	"Recipe.RequireDKMS": "recorded on the IMS recipe record when published (rewritten on every publish); kiwi builds the same root",
	"Recipe.DeclRange":   "the block's position in the build files",

	"Repository.Components":  "unused by the build: the recipe's own repository entries choose the components",
	"Repository.WaitTimeout": "how long to wait for the repository",
	"Repository.DeclRange":   "the block's position in the build files",
}
