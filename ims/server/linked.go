package server

import (
	"context"
	"net/http"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

// Recipes and images carry a link to their objects in S3. Creating and
// patching them is the same but for the fields and the S3 checks of a
// new link (records.check).

// unique is the first check of a new link: no other record of the type
// has its path. each is the collection's, or a transaction's under the
// lock; self is the patched record's id ("" on create).
func (rs records[T]) unique(each func(func(T) bool), l *store.Link, self string) error {
	var err error
	each(func(r T) bool {
		if rl := *rs.link(&r); r.Key() != self && rl != nil && rl.Path == l.Path {
			err = &linkProblem{http.StatusUnprocessableEntity, rs.noun + " record " + r.Key() + " already has the link path " + l.Path + "."}
		}
		return err == nil
	})
	return err
}

// checkLink is IMS's validation of a new link: unique, then in S3.
func (rs records[T]) checkLink(ctx context.Context, l *store.Link, self string) error {
	if err := rs.unique(rs.live.Each, l, self); err != nil {
		return err
	}
	return rs.check(ctx, l)
}

// createLinked is the POST of a record with a link: newRec builds it from
// the valid body, fields; its link is checked in S3 before the lock.
func createLinked[T store.Record](s *Server, rs records[T], w http.ResponseWriter, r *http.Request, fields []field, newRec func(vals map[string]any) T) {
	vals, ok := readValid(w, r, fields)
	if !ok {
		return
	}
	rec := newRec(vals)
	link := toLink(vals["link"])
	*rs.link(&rec) = link
	if link != nil {
		if err := rs.checkLink(r.Context(), link, ""); err != nil {
			s.writeLinkProblem(w, r, err)
			return
		}
	}
	err := rs.live.Update(func(tx store.Tx[T]) error {
		// Checked again under the lock: a concurrent POST may have taken
		// the path while S3 answered.
		if link != nil {
			if err := rs.unique(tx.Each, link, ""); err != nil {
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

// patchLinked is the PATCH of a record with a link: a link may be set
// only where there is none (409), and is checked as on create; apply
// sets the other fields of the valid body.
func patchLinked[T store.Record](s *Server, rs records[T], w http.ResponseWriter, r *http.Request, id string, fields []field, apply func(rec *T, vals map[string]any)) {
	s.moveMu.RLock()
	defer s.moveMu.RUnlock()
	cur, ok := rs.live.Get(id)
	if !ok {
		writeProblem(w, http.StatusNotFound, detailNotFound)
		return
	}
	vals, ok := readValid(w, r, fields)
	if !ok {
		return
	}
	link := toLink(vals["link"])
	if curLink := *rs.link(&cur); link != nil && !sameLink(link, curLink) {
		if curLink != nil {
			writeProblem(w, http.StatusConflict, detailConflict)
			return
		}
		if err := rs.checkLink(r.Context(), link, id); err != nil {
			s.writeLinkProblem(w, r, err)
			return
		}
	}
	var out T
	found := true
	err := rs.live.Update(func(tx store.Tx[T]) error {
		rec, ok := tx.Get(id)
		if !ok {
			found = false
			return nil
		}
		// Checked again under the lock, as on create.
		if recLink := rs.link(&rec); link != nil && !sameLink(link, *recLink) {
			if *recLink != nil {
				return errConflict
			}
			if err := rs.unique(tx.Each, link, id); err != nil {
				return err
			}
			*recLink = link
		}
		apply(&rec, vals)
		out = rec
		return tx.Put(rec)
	})
	s.writePatched(w, r, found, err, out)
}

// writeLinkOrStore answers a failed Update: a link check made under the
// lock, or the write of the data file.
func (s *Server) writeLinkOrStore(w http.ResponseWriter, r *http.Request, err error) {
	if _, ok := err.(*linkProblem); ok {
		s.writeLinkProblem(w, r, err)
		return
	}
	s.storeFailure(w, r, err)
}

// errConflict is a link another PATCH set while S3 answered this one.
var errConflict = &linkProblem{http.StatusConflict, detailConflict}

// writePatched answers the Update of a PATCH (of jobs too): the record
// may have gone meanwhile.
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
