package server

import (
	"context"
	"net/http"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

var recipeFields = []field{
	{name: "name", required: true, check: notBlank("name")},
	{name: "recipe_type", required: true, check: oneOf("kiwi-ng", "packer")},
	{name: "linux_distribution", required: true, check: oneOf(ims.LinuxDistributions()...)},
	{name: "link", nullable: true, check: linkField},
	{name: "template_dictionary", nullable: true, check: list(templateEntry)},
	{name: "require_dkms", check: boolean},
	{name: "arch", check: archField},
}

var recipePatchFields = []field{
	{name: "link", check: linkField},
	{name: "arch", check: archField},
	{name: "require_dkms", check: boolean},
	{name: "template_dictionary", nullable: true, check: list(templateEntry)},
}

func (s *Server) recipes() records[store.Recipe] {
	return records[store.Recipe]{
		live: s.st.Recipes, deleted: s.st.DeletedRecipes,
		deletedAt: func(r *store.Recipe) *string { return &r.Deleted },
		link:      func(r *store.Recipe) **store.Link { return &r.Link },
		hide: func(ctx context.Context, _ string, l *store.Link) (*store.Link, error) {
			return s.moveLink(ctx, l, false)
		},
		restore: func(ctx context.Context, l *store.Link) (*store.Link, error) { return s.moveLink(ctx, l, true) },
		drop:    s.deleteLink,
		noun:    "Recipe",
		// IMS checks only that S3 has a recipe's object.
		check: func(ctx context.Context, l *store.Link) error {
			_, err := s.headLink(ctx, l)
			return err
		},
	}
}

func (s *Server) recipeKind() *kind {
	return kindOf(s, s.recipes(), s.createRecipe, s.patchRecipe)
}

func (s *Server) createRecipe(w http.ResponseWriter, r *http.Request) {
	createLinked(s, s.recipes(), w, r, recipeFields, func(vals map[string]any) store.Recipe {
		rec := store.Recipe{
			ID: uuid.NewString(), Created: timestamp(s.now()),
			Name: vals["name"].(string), RecipeType: vals["recipe_type"].(string),
			LinuxDistribution: vals["linux_distribution"].(string),
			Arch:              "x86_64", RequireDKMS: true, TemplateDictionary: &[]store.TemplateEntry{},
		}
		setRecipeFields(&rec, vals)
		return rec
	})
}

func (s *Server) patchRecipe(w http.ResponseWriter, r *http.Request, id string) {
	patchLinked(s, s.recipes(), w, r, id, recipePatchFields, setRecipeFields)
}

// setRecipeFields sets the optional fields POST and PATCH share.
func setRecipeFields(rec *store.Recipe, vals map[string]any) {
	if v, ok := vals["arch"]; ok {
		rec.Arch = v.(string)
	}
	if v, ok := vals["require_dkms"]; ok {
		rec.RequireDKMS = v.(bool)
	}
	if v, ok := vals["template_dictionary"]; ok {
		rec.TemplateDictionary = toTemplate(v)
	}
}
