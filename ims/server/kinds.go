package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

// kind is one of the record kinds with live and deleted collections:
// recipes, images, public keys.
type kind struct {
	list, create, listDeleted http.HandlerFunc
	get, patch, getDeleted    func(w http.ResponseWriter, r *http.Request, id string)

	ids, deletedIDs func() []string
	// softDelete moves a live record and its artifacts to deleted;
	// hardDelete removes a live record (and its artifacts when cascade);
	// purge removes a deleted one and its artifacts; undelete restores.
	// Each reports whether the record was there.
	softDelete, purge, undelete func(ctx context.Context, id string) (bool, error)
	hardDelete                  func(ctx context.Context, id string, cascade bool) (bool, error)
}

func (s *Server) kind(name string) *kind {
	switch name {
	case "recipes":
		return s.recipeKind()
	case "images":
		return s.imageKind()
	}
	return s.publicKeyKind()
}

// records is what the handlers of one record type differ in: the delete,
// undelete and purge of the three kinds, and the create and patch of
// recipes and images (linked.go), are the same given these.
type records[T store.Record] struct {
	live, deleted *store.Collection[T]
	// deletedAt is the record's Deleted field.
	deletedAt func(*T) *string
	// link is the record's artifact link; nil for public keys, which have
	// no objects in S3.
	link func(*T) **store.Link
	// hide moves the objects of a link under deleted/ and returns the
	// deleted record's link; restore moves them back and returns the live
	// record's; drop deletes them.
	hide    func(ctx context.Context, id string, l *store.Link) (*store.Link, error)
	restore func(ctx context.Context, l *store.Link) (*store.Link, error)
	drop    func(ctx context.Context, l *store.Link) error
	// noun names the record type in the answer to a duplicate link.
	noun string
	// check is IMS's S3 validation of a new link, past its uniqueness.
	check func(ctx context.Context, l *store.Link) error
}

// kindOf builds the kind of a record type from its records and its
// create and patch handlers (patch may be nil).
func kindOf[T store.Record](s *Server, rs records[T], create http.HandlerFunc, patch func(http.ResponseWriter, *http.Request, string)) *kind {
	c, d := rs.live, rs.deleted
	return &kind{
		list: listOf(c), get: getOf(c), listDeleted: listOf(d), getDeleted: getOf(d),
		ids: idsOf(c), deletedIDs: idsOf(d),
		create: create, patch: patch,
		softDelete: func(ctx context.Context, id string) (bool, error) {
			return rs.move(ctx, c, d, id, func(l *store.Link) (*store.Link, error) { return rs.hide(ctx, id, l) }, func() string { return timestamp(s.now()) })
		},
		undelete: func(ctx context.Context, id string) (bool, error) {
			return rs.move(ctx, d, c, id, func(l *store.Link) (*store.Link, error) { return rs.restore(ctx, l) }, func() string { return "" })
		},
		hardDelete: func(ctx context.Context, id string, cascade bool) (bool, error) {
			return rs.remove(ctx, c, id, cascade)
		},
		purge: func(ctx context.Context, id string) (bool, error) {
			return rs.remove(ctx, d, id, true)
		},
	}
}

// move takes a record from one collection to the other with its objects,
// moved by moveLink, and sets its Deleted field to deleted(). The record is written to
// its new collection before it leaves the old one: a crash between leaves
// it in both, which Open heals, never in neither.
func (rs records[T]) move(ctx context.Context, from, to *store.Collection[T], id string, moveLink func(*store.Link) (*store.Link, error), deleted func() string) (bool, error) {
	rec, ok := from.Get(id)
	if !ok {
		return false, nil
	}
	if rs.link != nil {
		l, err := moveLink(*rs.link(&rec))
		if err != nil {
			return true, err
		}
		*rs.link(&rec) = l
	}
	*rs.deletedAt(&rec) = deleted()
	if err := to.Put(rec); err != nil {
		return true, storeErr(err)
	}
	return true, storeErr(from.Remove(id))
}

// remove deletes a record from c, and its objects first when withObjects.
func (rs records[T]) remove(ctx context.Context, c *store.Collection[T], id string, withObjects bool) (bool, error) {
	rec, ok := c.Get(id)
	if !ok {
		return false, nil
	}
	if withObjects && rs.link != nil {
		if err := rs.drop(ctx, *rs.link(&rec)); err != nil {
			return true, err
		}
	}
	return true, storeErr(c.Remove(id))
}

func listOf[T store.Record](c *store.Collection[T]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			w.Header().Set("Content-Encoding", "gzip")
			writeRaw(w, http.StatusOK, contentJSON, c.Gzip())
			return
		}
		writeRaw(w, http.StatusOK, contentJSON, c.JSON())
	}
}

// acceptsGzip reports whether the request's Accept-Encoding takes gzip
// (as Go's and Python's HTTP clients send it by default), not with q=0.
func acceptsGzip(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(h, ",") {
			name, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
			if !ok {
				return true
			}
			f, err := strconv.ParseFloat(q, 64)
			return err == nil && f > 0
		}
	}
	return false
}

func getOf[T store.Record](c *store.Collection[T]) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, id string) {
		rec, ok := c.Get(id)
		if !ok {
			writeProblem(w, http.StatusNotFound, detailNotFound)
			return
		}
		writeJSON(w, http.StatusOK, contentJSON, rec)
	}
}

func idsOf[T store.Record](c *store.Collection[T]) func() []string {
	return func() []string {
		all := c.All()
		ids := make([]string, len(all))
		for i, r := range all {
			ids[i] = r.Key()
		}
		return ids
	}
}

// s3Failure answers an S3 error that is no validation failure: IMS lets
// the SDK's exception through, which is a 500.
func (s *Server) s3Failure(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("s3", "method", r.Method, "path", r.URL.Path, "err", err)
	writeProblem(w, http.StatusInternalServerError, detailInternal)
}

// storeFailure answers a failed write of a data file.
func (s *Server) storeFailure(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("store", "method", r.Method, "path", r.URL.Path, "err", err)
	writeProblem(w, http.StatusInternalServerError, detailInternal)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var se *storeError
	if errors.As(err, &se) {
		s.storeFailure(w, r, err)
		return
	}
	s.s3Failure(w, r, err)
}

// storeError marks a data file write failure apart from an S3 one.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func storeErr(err error) error {
	if err == nil {
		return nil
	}
	return &storeError{err}
}

// recordOp is one of kind's delete, purge or undelete: it reports whether
// the record was there.
type recordOp = func(ctx context.Context, id string) (bool, error)

// deleteOp is what a DELETE runs: v3's soft delete, or v2's hard delete
// with its ?cascade (false and an answer written when that is bad).
func deleteOp(w http.ResponseWriter, r *http.Request, k *kind, soft bool) (recordOp, bool) {
	if soft {
		return k.softDelete, true
	}
	cascade, ok := cascadeParam(w, r)
	if !ok {
		return nil, false
	}
	return func(ctx context.Context, id string) (bool, error) { return k.hardDelete(ctx, id, cascade) }, true
}

func (s *Server) deleteOne(w http.ResponseWriter, r *http.Request, k *kind, id string, soft bool) {
	if op, ok := deleteOp(w, r, k, soft); ok {
		s.applyOne(w, r, id, op)
	}
}

func (s *Server) deleteAll(w http.ResponseWriter, r *http.Request, k *kind, soft bool) {
	if op, ok := deleteOp(w, r, k, soft); ok {
		s.applyAll(w, r, k.ids, op)
	}
}

// applyOne runs op on one record under moveMu and answers 204, 404 or
// the failure.
func (s *Server) applyOne(w http.ResponseWriter, r *http.Request, id string, op recordOp) {
	s.moveMu.Lock()
	defer s.moveMu.Unlock()
	found, err := op(r.Context(), id)
	switch {
	case err != nil:
		s.fail(w, r, err)
	case !found:
		writeProblem(w, http.StatusNotFound, detailNotFound)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// applyAll runs op on every record ids lists, stopping at the first
// failure. The ids are read under moveMu, so none is moved meanwhile.
func (s *Server) applyAll(w http.ResponseWriter, r *http.Request, ids func() []string, op recordOp) {
	s.moveMu.Lock()
	defer s.moveMu.Unlock()
	for _, id := range ids() {
		if _, err := op(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// cascadeParam reads v2's ?cascade (default true), as Flask-RESTful's
// inputs.boolean does.
func cascadeParam(w http.ResponseWriter, r *http.Request) (bool, bool) {
	v, ok := r.URL.Query()["cascade"]
	if !ok || len(v) == 0 {
		return true, true
	}
	switch strings.ToLower(v[0]) {
	case "true", "1", "yes", "on", "t", "y":
		return true, true
	case "false", "0", "no", "off", "f", "n":
		return false, true
	}
	writeProblem(w, http.StatusBadRequest, "Invalid literal for boolean(): "+strconv.Quote(v[0]))
	return false, false
}

// readUndelete reads the body of an undelete PATCH: {"operation":"undelete"}.
func readUndelete(w http.ResponseWriter, r *http.Request) bool {
	_, ok := readValid(w, r, []field{{name: "operation", required: true, check: oneOf("undelete")}})
	return ok
}

func (s *Server) undeleteOne(w http.ResponseWriter, r *http.Request, k *kind, id string) {
	if readUndelete(w, r) {
		s.applyOne(w, r, id, k.undelete)
	}
}

func (s *Server) undeleteAll(w http.ResponseWriter, r *http.Request, k *kind) {
	if readUndelete(w, r) {
		s.applyAll(w, r, k.deletedIDs, k.undelete)
	}
}

// linkProblem is a link that failed IMS's validation: its status, detail
// and the errors of a 422.
type linkProblem struct {
	status int
	detail string
}

func (p *linkProblem) Error() string { return p.detail }

func (s *Server) writeLinkProblem(w http.ResponseWriter, r *http.Request, err error) {
	var lp *linkProblem
	if !errors.As(err, &lp) {
		s.s3Failure(w, r, err)
		return
	}
	if lp.status == http.StatusUnprocessableEntity {
		writeInvalid(w, map[string]any{"link": []string{lp.detail}})
		return
	}
	writeProblem(w, lp.status, lp.detail)
}

// headLink checks that a link's object exists, as IMS's S3 HEAD does: an
// error S3 answered is a 422, no answer at all is a 500 (err).
func (s *Server) headLink(ctx context.Context, l *store.Link) (blob.Info, error) {
	bucket, key, err := blob.ParseURL(l.Path)
	if err != nil {
		return blob.Info{}, &linkProblem{http.StatusUnprocessableEntity, err.Error()}
	}
	info, err := s.blobs.Head(ctx, bucket, key)
	var ce *blob.ClientError
	if errors.Is(err, blob.ErrNotFound) || errors.As(err, &ce) {
		return info, &linkProblem{http.StatusUnprocessableEntity, "The artifact " + l.Path + " is not in S3 or cannot be read."}
	}
	return info, err
}

func sameLink(a, b *store.Link) bool {
	return a != nil && b != nil && *a == *b
}

// deletedKey is where soft delete moves an object: deleted/<key>.
func deletedKey(key string) string { return "deleted/" + key }

// moveLink moves the object of an s3 link to deleted/ (or back when
// restore) and returns the link to its new place. A link that is no
// s3:// URL, or whose object is gone, stays as it is.
func (s *Server) moveLink(ctx context.Context, l *store.Link, restore bool) (*store.Link, error) {
	if l == nil {
		return nil, nil
	}
	bucket, key, err := blob.ParseURL(l.Path)
	if err != nil {
		return l, nil
	}
	var dst string
	if restore {
		var ok bool
		if dst, ok = strings.CutPrefix(key, "deleted/"); !ok || dst == "" {
			return l, nil
		}
	} else {
		dst = deletedKey(key)
	}
	if err := s.blobs.Move(ctx, bucket, key, dst); err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			s.log.Warn("soft delete: artifact is gone", "path", l.Path)
			return &store.Link{Path: blob.URL(bucket, dst), Etag: l.Etag, Type: l.Type}, nil
		}
		return nil, err
	}
	return &store.Link{Path: blob.URL(bucket, dst), Etag: l.Etag, Type: l.Type}, nil
}

// deleteLink removes the object of an s3 link, if any.
func (s *Server) deleteLink(ctx context.Context, l *store.Link) error {
	if l == nil {
		return nil
	}
	bucket, key, err := blob.ParseURL(l.Path)
	if err != nil {
		return nil
	}
	return s.blobs.Delete(ctx, bucket, key)
}
