package server

import (
	"context"
	"net/http"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

var recipeFields = []field{
	{name: "name", required: true, check: notBlank("name")},
	{name: "recipe_type", required: true, check: oneOf("kiwi-ng", "packer")},
	{name: "linux_distribution", required: true, check: oneOf("sles12", "sles15", "centos7")},
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

func (s *Server) recipeKind() *kind {
	return kindOf(s, records[store.Recipe]{
		live: s.st.Recipes, deleted: s.st.DeletedRecipes,
		deletedAt: func(r *store.Recipe) *string { return &r.Deleted },
		link:      func(r *store.Recipe) **store.Link { return &r.Link },
		hide: func(ctx context.Context, _ string, l *store.Link) (*store.Link, error) {
			return s.moveLink(ctx, l, false)
		},
		restore: func(ctx context.Context, l *store.Link) (*store.Link, error) { return s.moveLink(ctx, l, true) },
		drop:    s.deleteLink,
	}, s.createRecipe, s.patchRecipe)
}

// checkRecipeLink is IMS's recipe link validation: the path is no other
// recipe's, and S3 has the object.
func (s *Server) checkRecipeLink(ctx context.Context, l *store.Link, self string) error {
	if err := s.uniqueRecipeLink(s.st.Recipes.Each, l, self); err != nil {
		return err
	}
	_, err := s.headLink(ctx, l)
	return err
}

func (s *Server) uniqueRecipeLink(each func(func(store.Recipe) bool), l *store.Link, self string) error {
	var err error
	each(func(r store.Recipe) bool {
		if r.ID != self && r.Link != nil && r.Link.Path == l.Path {
			err = &linkProblem{http.StatusUnprocessableEntity, "Recipe record " + r.ID + " already has the link path " + l.Path + "."}
		}
		return err == nil
	})
	return err
}

func (s *Server) createRecipe(w http.ResponseWriter, r *http.Request) {
	obj, _, ok := readBody(w, r)
	if !ok {
		return
	}
	vals, errs := validate(obj, recipeFields)
	if errs != nil {
		writeInvalid(w, errs)
		return
	}
	rec := store.Recipe{
		ID: uuid.NewString(), Created: timestamp(s.now()),
		Name: vals["name"].(string), RecipeType: vals["recipe_type"].(string),
		LinuxDistribution: vals["linux_distribution"].(string),
		Arch:              "x86_64", RequireDKMS: true, TemplateDictionary: &[]store.TemplateEntry{},
	}
	if v, ok := vals["arch"]; ok {
		rec.Arch = v.(string)
	}
	if v, ok := vals["require_dkms"]; ok {
		rec.RequireDKMS = v.(bool)
	}
	if v, ok := vals["template_dictionary"]; ok {
		rec.TemplateDictionary = toTemplate(v)
	}
	rec.Link = toLink(vals["link"])
	if rec.Link != nil {
		if err := s.checkRecipeLink(r.Context(), rec.Link, ""); err != nil {
			s.writeLinkProblem(w, r, err)
			return
		}
	}
	err := s.st.Recipes.Update(func(tx store.Tx[store.Recipe]) error {
		// Checked again under the lock: a concurrent POST may have taken
		// the path while S3 answered.
		if rec.Link != nil {
			if err := s.uniqueRecipeLink(tx.Each, rec.Link, ""); err != nil {
				return err
			}
		}
		return tx.Put(rec)
	})
	if err != nil {
		s.writeLinkOrStore(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, contentJSON, rec)
}

func (s *Server) writeLinkOrStore(w http.ResponseWriter, r *http.Request, err error) {
	if _, ok := err.(*linkProblem); ok {
		s.writeLinkProblem(w, r, err)
		return
	}
	s.storeFailure(w, r, err)
}

func (s *Server) patchRecipe(w http.ResponseWriter, r *http.Request, id string) {
	s.moveMu.RLock()
	defer s.moveMu.RUnlock()
	cur, ok := s.st.Recipes.Get(id)
	if !ok {
		writeProblem(w, http.StatusNotFound, detailNotFound)
		return
	}
	obj, _, ok := readBody(w, r)
	if !ok {
		return
	}
	vals, errs := validate(obj, recipePatchFields)
	if errs != nil {
		writeInvalid(w, errs)
		return
	}
	link := toLink(vals["link"])
	if link != nil && !sameLink(link, cur.Link) {
		if cur.Link != nil {
			writeProblem(w, http.StatusConflict, detailConflict)
			return
		}
		if err := s.checkRecipeLink(r.Context(), link, id); err != nil {
			s.writeLinkProblem(w, r, err)
			return
		}
	}
	var out store.Recipe
	found := true
	err := s.st.Recipes.Update(func(tx store.Tx[store.Recipe]) error {
		rec, ok := tx.Get(id)
		if !ok {
			found = false
			return nil
		}
		if link != nil && !sameLink(link, rec.Link) {
			if rec.Link != nil {
				return errConflict
			}
			if err := s.uniqueRecipeLink(tx.Each, link, id); err != nil {
				return err
			}
			rec.Link = link
		}
		if v, ok := vals["arch"]; ok {
			rec.Arch = v.(string)
		}
		if v, ok := vals["require_dkms"]; ok {
			rec.RequireDKMS = v.(bool)
		}
		if v, ok := vals["template_dictionary"]; ok {
			rec.TemplateDictionary = toTemplate(v)
		}
		out = rec
		return tx.Put(rec)
	})
	s.writePatched(w, r, found, err, out)
}

var errConflict = &linkProblem{http.StatusConflict, detailConflict}

func (s *Server) writePatched(w http.ResponseWriter, r *http.Request, found bool, err error, rec any) {
	switch {
	case !found:
		writeProblem(w, http.StatusNotFound, detailNotFound)
	case err == errConflict:
		writeProblem(w, http.StatusConflict, detailConflict)
	case err != nil:
		s.writeLinkOrStore(w, r, err)
	default:
		writeJSON(w, http.StatusOK, contentJSON, rec)
	}
}
