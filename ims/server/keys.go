package server

import (
	"net/http"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

var publicKeyFields = []field{
	{name: "name", required: true, check: notBlank("name")},
	{name: "public_key", required: true, check: nonEmpty},
}

func (s *Server) publicKeyKind() *kind {
	return kindOf(s, records[store.PublicKey]{
		live: s.st.PublicKeys, deleted: s.st.DeletedPublicKeys,
		deletedAt: func(r *store.PublicKey) *string { return &r.Deleted },
	}, s.createPublicKey, nil)
}

func (s *Server) createPublicKey(w http.ResponseWriter, r *http.Request) {
	vals, ok := readValid(w, r, publicKeyFields)
	if !ok {
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
