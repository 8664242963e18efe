package server

import (
	"net/http"
)

type handlers = map[string]http.HandlerFunc

// resolveV3 maps the segments after /v3.
func (s *Server) resolveV3(segs []string) (endpoint, bool) {
	if len(segs) == 0 {
		return endpoint{}, false
	}
	p := "/v3/" + segs[0]
	switch segs[0] {
	case "recipes", "images", "public-keys":
		return s.kindRoutes(p, s.kind(segs[0]), segs[1:], true)
	case "jobs":
		return s.jobRoutes(p, segs[1:])
	case "deleted":
		if len(segs) < 2 || len(segs) > 3 {
			return endpoint{}, false
		}
		switch segs[1] {
		case "recipes", "images", "public-keys":
		default:
			return endpoint{}, false
		}
		k := s.kind(segs[1])
		p += "/" + segs[1]
		if len(segs) == 2 {
			return endpoint{pattern: p, handlers: handlers{
				http.MethodGet:    k.listDeleted,
				http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.applyAll(w, r, k.deletedIDs, k.purge) },
				http.MethodPatch:  func(w http.ResponseWriter, r *http.Request) { s.undeleteAll(w, r, k) },
			}}, true
		}
		id := segs[2]
		return endpoint{pattern: p + "/{id}", handlers: handlers{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { k.getDeleted(w, r, id) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.applyOne(w, r, id, k.purge) },
			http.MethodPatch:  func(w http.ResponseWriter, r *http.Request) { s.undeleteOne(w, r, k, id) },
		}}, true
	case "remote-build-nodes":
		return s.nodeRoutes(p, segs[1:])
	}
	return endpoint{}, false
}

// resolveV2 maps the segments after /v2, or of an unversioned path: the
// v2 handlers, whose DELETE is a hard delete.
func (s *Server) resolveV2(prefix string, segs []string) (endpoint, bool) {
	if len(segs) == 0 {
		return endpoint{}, false
	}
	p := prefix + "/" + segs[0]
	switch segs[0] {
	case "recipes", "images", "public-keys":
		return s.kindRoutes(p, s.kind(segs[0]), segs[1:], false)
	case "jobs":
		return s.jobRoutes(p, segs[1:])
	}
	return endpoint{}, false
}

// kindRoutes maps the segments after p, the path of k's records. v2 and
// v3 differ only in DELETE: v3's soft deletes, v2's deletes for good.
func (s *Server) kindRoutes(p string, k *kind, segs []string, softDelete bool) (endpoint, bool) {
	switch len(segs) {
	case 0:
		return endpoint{pattern: p, handlers: handlers{
			http.MethodGet: k.list, http.MethodPost: k.create, http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.deleteAll(w, r, k, softDelete) },
		}}, true
	case 1:
		id := segs[0]
		h := handlers{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { k.get(w, r, id) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.deleteOne(w, r, k, id, softDelete) },
		}
		if k.patch != nil {
			h[http.MethodPatch] = func(w http.ResponseWriter, r *http.Request) { k.patch(w, r, id) }
		}
		return endpoint{pattern: p + "/{id}", handlers: h}, true
	}
	return endpoint{}, false
}
