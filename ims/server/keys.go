package server

import (
	"context"
	"net/http"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

var publicKeyFields = []field{
	{name: "name", required: true, check: notBlank("name")},
	{name: "public_key", required: true, check: nonEmpty},
}

func (s *Server) publicKeyKind() *kind {
	c, d := s.st.PublicKeys, s.st.DeletedPublicKeys
	move := func(from, to *store.Collection[store.PublicKey], deleted func() string) func(context.Context, string) (bool, error) {
		return func(_ context.Context, id string) (bool, error) {
			rec, ok := from.Get(id)
			if !ok {
				return false, nil
			}
			rec.Deleted = deleted()
			if err := to.Put(rec); err != nil {
				return true, storeErr(err)
			}
			return true, storeErr(from.Remove(id))
		}
	}
	remove := func(from *store.Collection[store.PublicKey]) func(context.Context, string) (bool, error) {
		return func(_ context.Context, id string) (bool, error) {
			if _, ok := from.Get(id); !ok {
				return false, nil
			}
			return true, storeErr(from.Remove(id))
		}
	}
	return &kind{
		list: listOf(c), get: getOf(c), listDeleted: listOf(d), getDeleted: getOf(d),
		ids: idsOf(c), deletedIDs: idsOf(d),
		create:     s.createPublicKey,
		softDelete: move(c, d, func() string { return timestamp(s.now()) }),
		undelete:   move(d, c, func() string { return "" }),
		hardDelete: func(ctx context.Context, id string, _ bool) (bool, error) { return remove(c)(ctx, id) },
		purge:      remove(d),
	}
}

func (s *Server) createPublicKey(w http.ResponseWriter, r *http.Request) {
	obj, _, ok := readBody(w, r)
	if !ok {
		return
	}
	vals, errs := validate(obj, publicKeyFields)
	if errs != nil {
		writeInvalid(w, errs)
		return
	}
	rec := store.PublicKey{
		ID: uuid.NewString(), Created: timestamp(s.now()),
		Name: vals["name"].(string), PublicKey: vals["public_key"].(string),
	}
	if err := s.st.PublicKeys.Put(rec); err != nil {
		s.storeFailure(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, contentJSON, rec)
}
