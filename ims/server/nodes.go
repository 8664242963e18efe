package server

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

// Remote build node status texts: imsbuild serve keeps the records but
// runs no job on a remote node.
const (
	nodeSSHStatus    = "Not checked: imsbuild serve does not run jobs on remote build nodes"
	nodePodmanStatus = "Not checked: imsbuild serve does not run jobs on remote build nodes"
	nodeArchUnknown  = "unknown"
)

// nodeStatus is IMS's RemoteBuildNodeStatus.
type nodeStatus struct {
	XName          string `json:"xname"`
	SSHStatus      string `json:"sshStatus"`
	PodmanStatus   string `json:"podmanStatus"`
	NodeArch       string `json:"nodeArch"`
	NumCurrentJobs int    `json:"numCurrentJobs"`
	AbleToRunJobs  bool   `json:"ableToRunJobs"`
}

func statusOf(n store.RemoteBuildNode) nodeStatus {
	return nodeStatus{XName: n.XName, SSHStatus: nodeSSHStatus, PodmanStatus: nodePodmanStatus, NodeArch: nodeArchUnknown}
}

var nodeFields = []field{{name: "xname", required: true, check: xname}}

// xname accepts what can be looked up again by path: 1 to 128 characters,
// no slash.
func xname(raw json.RawMessage) (any, any) {
	s, ok := isString(raw)
	switch {
	case !ok:
		return nil, []string{msgString}
	case s == "":
		return nil, []string{msgMinLen1}
	case len(s) > maxIDLen || strings.ContainsAny(s, "/\x00") || s == "." || s == "..":
		return nil, []string{"Not a valid xname."}
	}
	return s, nil
}

func (s *Server) nodeRoutes(p string, segs []string) (endpoint, bool) {
	c := s.st.RemoteBuildNodes
	switch {
	case len(segs) == 0:
		return endpoint{pattern: p, handlers: handlers{
			http.MethodGet: listOf(c), http.MethodPost: s.createNode,
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
				if err := c.Remove(idsOf(c)()...); err != nil {
					s.storeFailure(w, r, err)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			},
		}}, true
	case segs[0] == "status" && len(segs) == 1:
		return endpoint{pattern: p + "/status", handlers: handlers{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
			out := []nodeStatus{}
			for _, n := range c.All() {
				out = append(out, statusOf(n))
			}
			writeJSON(w, http.StatusOK, contentJSON, out)
		}}}, true
	case segs[0] == "status" && len(segs) == 2:
		x := segs[1]
		return endpoint{pattern: p + "/status/{xname}", handlers: handlers{http.MethodGet: func(w http.ResponseWriter, _ *http.Request) {
			n, ok := c.Get(x)
			if !ok {
				writeProblem(w, http.StatusNotFound, detailNotFound)
				return
			}
			writeJSON(w, http.StatusOK, contentJSON, statusOf(n))
		}}}, true
	case len(segs) == 1:
		x := segs[0]
		return endpoint{pattern: p + "/{xname}", handlers: handlers{
			http.MethodGet: func(w http.ResponseWriter, r *http.Request) { getOf(c)(w, r, x) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
				if _, ok := c.Get(x); !ok {
					writeProblem(w, http.StatusNotFound, detailNotFound)
					return
				}
				if err := c.Remove(x); err != nil {
					s.storeFailure(w, r, err)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			},
		}}, true
	}
	return endpoint{}, false
}

func (s *Server) createNode(w http.ResponseWriter, r *http.Request) {
	vals, ok := readValid(w, r, nodeFields)
	if !ok {
		return
	}
	n := store.RemoteBuildNode{XName: vals["xname"].(string)}
	if err := s.st.RemoteBuildNodes.Put(n); err != nil {
		s.storeFailure(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, contentJSON, n)
}
