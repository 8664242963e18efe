package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

// Runner runs IMS jobs. Without one, POST /jobs validates the request as
// IMS does and then answers 500, as IMS does when it cannot create a job's
// Kubernetes objects.
type Runner interface {
	// Start admits a new, validated job: it may fill in the record (the
	// SSH containers' connection_info), stores it, queues it, and returns
	// the record as stored, which the POST answers. On error nothing is
	// stored and nothing runs.
	Start(ctx context.Context, job store.Job) (store.Job, error)
	// Cancel stops job id if it is queued or running and returns once its
	// work is undone (sandbox killed, mounts and scratch space gone); the
	// server then removes the record. An unknown id is no error.
	Cancel(id string)
	// Log opens the log of job id; it reports fs.ErrNotExist when the job
	// has none.
	Log(id string) (io.ReadCloser, error)
}

// Config is what New needs. Store and Blobs are required.
type Config struct {
	Store *store.Store
	Blobs *blob.Store
	// Version is what GET /version answers.
	Version string
	// Token, when not empty, is the bearer token every route but
	// /healthz/* needs.
	Token string
	// MaxBodyBytes bounds request bodies (default 1 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Registry receives the server's metrics and is served at /metrics
	// (default: a new registry).
	Registry *prometheus.Registry
	Runner   Runner
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the IMS API. It is an http.Handler.
type Server struct {
	st      *store.Store
	blobs   *blob.Store
	version string
	token   [32]byte
	auth    bool
	maxBody int64
	log     *slog.Logger
	reg     *prometheus.Registry
	latency *prometheus.HistogramVec
	runner  Runner
	now     func() time.Time
	// moveMu serializes soft deletes, undeletes and hard deletes, which
	// touch S3 and two collections; a PATCH holds it shared, so that it
	// lands before a delete takes the record or answers 404 after.
	moveMu sync.RWMutex
}

// New returns the API server of cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Blobs == nil {
		return nil, errors.New("new ims server: a store and an s3 store are required")
	}
	s := &Server{
		st: cfg.Store, blobs: cfg.Blobs, version: cfg.Version, maxBody: cfg.MaxBodyBytes,
		log: cfg.Logger, reg: cfg.Registry, runner: cfg.Runner, now: cfg.Now,
	}
	if s.version == "" {
		s.version = "Unknown"
	}
	if cfg.Token != "" {
		s.token, s.auth = sha256.Sum256([]byte(cfg.Token)), true
	}
	if s.maxBody <= 0 {
		s.maxBody = maxBodyDefault
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imsbuild_serve_http_request_duration_seconds",
		Help:    "Latency of IMS API requests by route pattern, method and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method", "code"})
	records := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imsbuild_serve_records", Help: "Records in the store by kind.",
	}, []string{"kind"})
	if err := s.reg.Register(s.latency); err != nil {
		return nil, err
	}
	if err := s.reg.Register(recordsCollector{s.st, records}); err != nil {
		return nil, err
	}
	return s, nil
}

// recordsCollector reads the record counts when scraped.
type recordsCollector struct {
	st *store.Store
	g  *prometheus.GaugeVec
}

func (c recordsCollector) Describe(ch chan<- *prometheus.Desc) { c.g.Describe(ch) }
func (c recordsCollector) Collect(ch chan<- prometheus.Metric) {
	for kind, n := range map[string]int{
		"recipes": c.st.Recipes.Len(), "deleted_recipes": c.st.DeletedRecipes.Len(),
		"images": c.st.Images.Len(), "deleted_images": c.st.DeletedImages.Len(),
		"public_keys": c.st.PublicKeys.Len(), "deleted_public_keys": c.st.DeletedPublicKeys.Len(),
		"jobs": c.st.Jobs.Len(), "remote_build_nodes": c.st.RemoteBuildNodes.Len(),
	} {
		c.g.WithLabelValues(kind).Set(float64(n))
	}
	c.g.Collect(ch)
}

// statusWriter records the status and size of a response for the access
// log and the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// endpoint is a resolved route: its pattern (for metrics) and handlers by
// method.
type endpoint struct {
	pattern  string
	handlers map[string]http.HandlerFunc
	public   bool // no token needed
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	ep, found := s.resolve(r.URL.EscapedPath())
	pattern := "unknown"
	if found {
		pattern = ep.pattern
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
			if sw.status == 0 {
				writeProblem(sw, http.StatusInternalServerError, detailInternal)
			}
		}
		d := time.Since(start)
		s.latency.WithLabelValues(pattern, r.Method, strconv.Itoa(sw.status)).Observe(d.Seconds())
		s.log.Info("http", "method", r.Method, "route", pattern, "path", r.URL.Path, "status", sw.status,
			"bytes", sw.bytes, "duration", d, "remote", r.RemoteAddr)
	}()
	if !found {
		writeProblem(sw, http.StatusNotFound, detailNoURL)
		return
	}
	if !ep.public && s.auth && !s.authorized(r) {
		sw.Header().Set("WWW-Authenticate", `Bearer realm="imsbuild"`)
		writeProblem(sw, http.StatusUnauthorized, detailNoToken)
		return
	}
	h, ok := ep.handlers[r.Method]
	if !ok && r.Method == http.MethodHead {
		h, ok = ep.handlers[http.MethodGet]
	}
	if !ok {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
			if ep.handlers[m] != nil {
				allow = append(allow, m)
			}
		}
		writeMethodNotAllowed(sw, strings.Join(allow, ", "))
		return
	}
	r.Body = http.MaxBytesReader(sw, r.Body, s.maxBody)
	h(sw, r)
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	// Comparing digests keeps the time independent of the token's length.
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

// maxIDLen bounds path ids; IMS ids are 36-character UUIDs and xnames are
// short.
const maxIDLen = 128

// resolve maps an escaped URL path to its endpoint. Paths are matched on
// their segments; an empty segment (a trailing slash, "//") matches
// nothing, as in IMS.
func (s *Server) resolve(path string) (endpoint, bool) {
	if rest, ok := strings.CutPrefix(path, "/apis/ims"); ok && (rest == "" || rest[0] == '/') {
		path = rest
	}
	if !strings.HasPrefix(path, "/") || len(path) < 2 {
		return endpoint{}, false
	}
	segs := strings.Split(path[1:], "/")
	for i, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil || u == "" || len(u) > maxIDLen || strings.ContainsAny(u, "/\x00") || u == "." || u == ".." {
			return endpoint{}, false
		}
		segs[i] = u
	}
	switch {
	case len(segs) == 1 && segs[0] == "version":
		return endpoint{pattern: "/version", handlers: map[string]http.HandlerFunc{http.MethodGet: s.getVersion}}, true
	case len(segs) == 1 && segs[0] == "metrics":
		h := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
		return endpoint{pattern: "/metrics", handlers: map[string]http.HandlerFunc{http.MethodGet: h.ServeHTTP}}, true
	case len(segs) == 2 && segs[0] == "healthz" && (segs[1] == "ready" || segs[1] == "live"):
		return endpoint{pattern: "/healthz/" + segs[1], public: true, handlers: map[string]http.HandlerFunc{http.MethodGet: s.getHealth}}, true
	case segs[0] == "v3":
		return s.resolveV3(segs[1:])
	case segs[0] == "v2":
		return s.resolveV2("/v2", segs[1:])
	}
	return s.resolveV2("", segs)
}

func (s *Server) getVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, contentJSON, map[string]string{"version": s.version})
}

func (s *Server) getHealth(w http.ResponseWriter, _ *http.Request) {
	writeRaw(w, http.StatusOK, contentJSON, []byte("{}"))
}

// timestamp formats t as IMS does: naive ISO 8601, microseconds left out
// when they are zero (Python's datetime.isoformat).
func timestamp(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04:05.000000")
}

// parseTimestamp reads an IMS timestamp (naive, taken as UTC).
func parseTimestamp(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.999999", time.RFC3339Nano, "2006-01-02 15:04:05.999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not an IMS timestamp: " + s)
}
