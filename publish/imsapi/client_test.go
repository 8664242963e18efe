package imsapi

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/faultproxy"
)

// testTimeout bounds each test.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, endpoint string, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{Endpoint: endpoint, Token: testToken, Backoff: 5 * time.Millisecond,
		HTTPClient: &http.Client{Timeout: 5 * time.Second}}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New() error: %v", err)
	}
	return c
}

func testRecord(name, etag string) ims.ImageRecord {
	return ims.ImageRecord{
		Name: name, Arch: "x86_64",
		Link: &ims.Link{Path: "s3://boot-images/" + ims.ImageID(name) + "/manifest.json", Etag: etag, Type: "s3"},
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" = ok
	}{
		{"http", Config{Endpoint: "http://127.0.0.1:8080"}, ""},
		{"gateway", Config{Endpoint: "https://api-gw.example/apis/ims/", APIVersion: "v2"}, ""},
		{"empty", Config{}, "no endpoint"},
		{"no scheme", Config{Endpoint: "api-gw.example/apis/ims"}, "http:// or https://"},
		{"ftp", Config{Endpoint: "ftp://x/"}, "http:// or https://"},
		{"query", Config{Endpoint: "http://x/?a=b"}, "query"},
		{"version", Config{Endpoint: "http://x", APIVersion: "v1"}, "want v3 or v2"},
		{"attempts", Config{Endpoint: "http://x", MaxAttempts: -1}, "negative"},
		{"token", Config{Endpoint: "http://x", Token: "a\nb"}, "line break"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("New() error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("New() error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// Registering the same image twice leaves one record; the second call
// returns it without a POST.
func TestRegisterImageIdempotent(t *testing.T) {
	for _, version := range []string{"v3", "v2"} {
		t.Run(version, func(t *testing.T) {
			ctx := testContext(t)
			srv := newIMSServer(t)
			c := newClient(t, srv.URL, func(c *Config) { c.APIVersion = version })
			want := testRecord("compute", "0075fa9ea6cca6f246e557e3be18d302")
			want.Metadata = map[string]string{"io.imsbuild.key": "abc"}

			first, err := c.RegisterImage(ctx, want)
			if err != nil {
				t.Fatalf("RegisterImage() error: %v", err)
			}
			if first.ID == "" || first.Created == "" {
				t.Errorf("RegisterImage() = %+v, want an id and created from IMS", first)
			}
			if diff := cmp.Diff(want, first, ignoreAssigned); diff != "" {
				t.Errorf("RegisterImage() (-want +got):\n%s", diff)
			}
			second, err := c.RegisterImage(ctx, want)
			if err != nil {
				t.Fatalf("RegisterImage() again error: %v", err)
			}
			if diff := cmp.Diff(first, second); diff != "" {
				t.Errorf("RegisterImage() again (-first +second):\n%s", diff)
			}
			if n := len(srv.imageRecords()); n != 1 {
				t.Errorf("server has %d image records, want 1", n)
			}
			path := "/" + version + "/images"
			if g, p := srv.count("GET "+path), srv.count("POST "+path); g != 2 || p != 1 {
				t.Errorf("requests: %d GET, %d POST; want 2 GET, 1 POST", g, p)
			}
		})
	}
}

var ignoreAssigned = cmp.FilterPath(func(p cmp.Path) bool {
	s := p.String()
	return s == "ID" || s == "Created"
}, cmp.Ignore())

// Another image, or the same name with a new manifest, gets its own record;
// a new etag on a link path another record holds is refused with an
// explanation.
func TestRegisterImageDistinct(t *testing.T) {
	ctx := testContext(t)
	srv := newIMSServer(t)
	c := newClient(t, srv.URL)
	a, err := c.RegisterImage(ctx, testRecord("compute", "etag-1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.RegisterImage(ctx, testRecord("uan", "etag-1"))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID {
		t.Errorf("two images got one id %s", a.ID)
	}
	_, err = c.RegisterImage(ctx, testRecord("compute", "etag-2"))
	if err == nil {
		t.Fatal("RegisterImage() with a new etag on a registered link path: error = nil")
	}
	for _, w := range []string{
		"register image compute: POST " + srv.URL + "/v3/images: 422 Unprocessable Entity",
		"is already registered to image " + a.ID + ` with etag "etag-1"`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("RegisterImage() error = %q, want it to contain %q", err, w)
		}
	}
	if n := len(srv.imageRecords()); n != 2 {
		t.Errorf("server has %d image records, want 2", n)
	}
}

func TestRegisterImageErrors(t *testing.T) {
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>login</html>"))
	}))
	t.Cleanup(html.Close)
	srv := newIMSServer(t)
	down := closedEndpoint(t)

	tests := []struct {
		name     string
		endpoint string
		token    string
		rec      ims.ImageRecord
		is       error
		want     []string
		attempts int // requests to the IMS server, when it is the one
	}{{
		name: "wrong token", endpoint: srv.URL, token: "stale-token-xyz", rec: testRecord("compute", "e"),
		is:   ErrTokenRejected,
		want: []string{"register image compute: GET " + srv.URL + "/v3/images: 401 Unauthorized: token rejected", "Invalid or expired token"},
	}, {
		name: "bad arch", endpoint: srv.URL, rec: func() ims.ImageRecord { r := testRecord("compute", "e"); r.Arch = "ppc64le"; return r }(),
		want: []string{"register image compute: POST " + srv.URL + "/v3/images: 422 Unprocessable Entity: ", "arch: Must be one of: aarch64, x86_64."},
	}, {
		name: "bad link type", endpoint: srv.URL, rec: func() ims.ImageRecord { r := testRecord("compute", "e"); r.Link.Type = "http"; return r }(),
		want: []string{"POST " + srv.URL + "/v3/images: 422 Unprocessable Entity", "link: (type: Must be one of: s3.)"},
	}, {
		name: "wrong endpoint", endpoint: srv.URL + "/apis", rec: testRecord("compute", "e"),
		is:   ErrWrongEndpoint,
		want: []string{"GET " + srv.URL + "/apis/v3/images: 404 Not Found: no IMS API here"},
	}, {
		name: "html", endpoint: html.URL, rec: testRecord("compute", "e"),
		is:   ErrWrongEndpoint,
		want: []string{"GET " + html.URL + "/v3/images: 200 OK: the answer is text/html, not IMS JSON"},
	}, {
		name: "server down", endpoint: down, rec: testRecord("compute", "e"),
		is:   ErrUnreachable,
		want: []string{"register image compute: GET " + down + "/v3/images: connection refused (is the endpoint " + down + " right", "(after 4 attempts)"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			c := newClient(t, tc.endpoint, func(c *Config) {
				if tc.token != "" {
					c.Token = tc.token
				}
			})
			_, err := c.RegisterImage(ctx, tc.rec)
			if err == nil {
				t.Fatal("RegisterImage() error = nil")
			}
			t.Logf("RegisterImage() error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("RegisterImage() error = %v, want errors.Is %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("RegisterImage() error = %q\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testToken) || tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("RegisterImage() error %q shows the token", err)
			}
		})
	}
	if n := len(srv.imageRecords()); n != 0 {
		t.Errorf("server has %d image records after failures, want 0", n)
	}
}

// closedEndpoint returns an http:// URL on a loopback port nothing listens on.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestRegisterImageRetries(t *testing.T) {
	tests := []struct {
		name      string
		fail      string // "METHOD /v3/images"
		n         int
		late      bool // the failing POST did create the record
		wantGET   int
		wantPOST  int
		wantError []string // "" = success
	}{
		{name: "GET 500 twice", fail: "GET /v3/images", n: 2, wantGET: 3, wantPOST: 1},
		{name: "POST 500 once", fail: "POST /v3/images", n: 1, wantGET: 2, wantPOST: 2},
		{name: "POST created then 500", fail: "POST /v3/images", n: 1, late: true, wantGET: 2, wantPOST: 1},
		{name: "GET 500 always", fail: "GET /v3/images", n: 100, wantGET: 4, wantPOST: 0,
			wantError: []string{"GET ", "/v3/images: 500 Internal Server Error: An internal error occurred (after 4 attempts)"}},
		{name: "POST 500 always", fail: "POST /v3/images", n: 100, wantGET: 4, wantPOST: 4,
			wantError: []string{"POST ", "/v3/images: 500 Internal Server Error: An internal error occurred (after 4 attempts)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			srv := newIMSServer(t)
			srv.failNext(tc.fail, tc.n, tc.late)
			c := newClient(t, srv.URL)
			rec, err := c.RegisterImage(ctx, testRecord("compute", "etag"))
			if tc.wantError == nil {
				if err != nil {
					t.Fatalf("RegisterImage() error: %v", err)
				}
				if recs := srv.imageRecords(); len(recs) != 1 || recs[0].ID != rec.ID {
					t.Errorf("server records %+v, want exactly the returned %s", recs, rec.ID)
				}
			} else {
				if err == nil {
					t.Fatal("RegisterImage() error = nil")
				}
				for _, w := range tc.wantError {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("RegisterImage() error = %q, want it to contain %q", err, w)
					}
				}
			}
			if g, p := srv.count("GET /v3/images"), srv.count("POST /v3/images"); g != tc.wantGET || p != tc.wantPOST {
				t.Errorf("requests: %d GET, %d POST; want %d GET, %d POST", g, p, tc.wantGET, tc.wantPOST)
			}
		})
	}
}

// Dropped connections and 500s from a proxy in between are retried; each
// image is registered once.
func TestRegisterImageThroughFaults(t *testing.T) {
	var first atomic.Bool
	tests := []struct {
		name    string
		faults  faultproxy.Faults
		timeout time.Duration // of each request
	}{
		{name: "first request times out", timeout: 300 * time.Millisecond, faults: faultproxy.Faults{
			DelayPerRequest: 10 * time.Second, Only: func(*http.Request) bool { return first.CompareAndSwap(false, true) }}},
		// Odd periods: a register is a GET then a POST, so an even period
		// would hit the same kind of request every time.
		{name: "drop every 3rd, 500 every 5th", faults: faultproxy.Faults{DropEvery: 3, Status500Every: 5}},
		{name: "every 2nd POST dropped", faults: faultproxy.Faults{DropEvery: 2, Only: func(r *http.Request) bool { return r.Method == http.MethodPost }}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			srv := newIMSServer(t)
			px := faultproxy.Start(t, strings.TrimPrefix(srv.URL, "http://"), tc.faults)
			c := newClient(t, px.URL(), func(c *Config) {
				if tc.timeout > 0 {
					c.HTTPClient = &http.Client{Timeout: tc.timeout}
				}
			})
			names := []string{"a", "b", "c", "a", "b", "c"}
			for _, name := range names {
				if _, err := c.RegisterImage(ctx, testRecord(name, "etag")); err != nil {
					t.Fatalf("RegisterImage(%s) through faults error: %v", name, err)
				}
			}
			if n := len(srv.imageRecords()); n != 3 {
				t.Errorf("server has %d image records, want 3", n)
			}
			st := px.Stats()
			t.Logf("proxy stats: %+v", st)
			if st.Dropped == 0 && st.Delayed == 0 {
				t.Errorf("proxy Stats() = %+v, want dropped or delayed requests", st)
			}
		})
	}
}

// Cancelling the context while waiting to retry returns at once.
func TestRegisterImageCancelled(t *testing.T) {
	srv := newIMSServer(t)
	srv.failNext("GET /v3/images", 100, false)
	c := newClient(t, srv.URL, func(c *Config) { c.Backoff = time.Hour })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.RegisterImage(ctx, testRecord("compute", "etag"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RegisterImage() error = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("RegisterImage() returned after %v", el)
	}
}

func TestRegisterRecipe(t *testing.T) {
	ctx := testContext(t)
	srv := newIMSServer(t)
	c := newClient(t, srv.URL)
	want := ims.RecipeRecord{
		Name: "node", RecipeType: "kiwi-ng", LinuxDistribution: "sles15", Arch: "x86_64",
		Link:               &ims.Link{Path: "s3://ims/recipes/1/recipe.tgz", Etag: "r1", Type: "s3"},
		TemplateDictionary: []ims.TemplateEntry{{Key: "CSM_RELEASE", Value: "1.6"}},
	}
	first, err := c.RegisterRecipe(ctx, want)
	if err != nil {
		t.Fatalf("RegisterRecipe() error: %v", err)
	}
	if diff := cmp.Diff(want, first, ignoreAssigned); diff != "" || first.ID == "" {
		t.Errorf("RegisterRecipe() = %+v (-want +got):\n%s", first, diff)
	}
	second, err := c.RegisterRecipe(ctx, want)
	if err != nil {
		t.Fatalf("RegisterRecipe() again error: %v", err)
	}
	if second.ID != first.ID || len(srv.recipeRecords()) != 1 {
		t.Errorf("second RegisterRecipe() = %s, server has %d recipes; want %s and 1", second.ID, len(srv.recipeRecords()), first.ID)
	}

	bad := want
	bad.LinuxDistribution = "debian"
	bad.Link = &ims.Link{Path: "s3://ims/recipes/2/recipe.tgz", Type: "s3"}
	_, err = c.RegisterRecipe(ctx, bad)
	if w := "register recipe node: POST " + srv.URL + "/v3/recipes: 422 Unprocessable Entity: "; err == nil || !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), "linux_distribution: Must be one of") {
		t.Errorf("RegisterRecipe(debian) error = %v, want %q… linux_distribution", err, w)
	}
	bad.LinuxDistribution = ""
	if _, err := c.RegisterRecipe(ctx, bad); err == nil || !strings.Contains(err.Error(), "no linux_distribution") {
		t.Errorf("RegisterRecipe() without linux_distribution error = %v", err)
	}
}

// A CA bundle makes an endpoint whose certificate only that CA vouches for
// trusted; without it the same endpoint fails certificate verification.
func TestCABundle(t *testing.T) {
	ctx := testContext(t)
	srv := newIMSServer(t)
	tls := httptest.NewTLSServer(http.HandlerFunc(srv.serve))
	t.Cleanup(tls.Close)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	der := tls.Certificate().Raw
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}

	plain, err := New(Config{Endpoint: tls.URL, Token: testToken, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.RegisterImage(ctx, testRecord("compute", "e1")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("RegisterImage() without the CA bundle: error %v, want a certificate error", err)
	}
	trusted, err := New(Config{Endpoint: tls.URL, Token: testToken, CABundle: bundle, MaxAttempts: 1})
	if err != nil {
		t.Fatalf("New() with a CA bundle: %v", err)
	}
	if _, err := trusted.RegisterImage(ctx, testRecord("compute", "e1")); err != nil {
		t.Errorf("RegisterImage() with the CA bundle: %v", err)
	}

	notPEM := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{Endpoint: tls.URL, CABundle: notPEM},
		{Endpoint: tls.URL, CABundle: filepath.Join(t.TempDir(), "missing.pem")},
		{Endpoint: tls.URL, CABundle: bundle, HTTPClient: http.DefaultClient},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

// The id IMS assigns becomes an S3 prefix and a URL path: anything but a
// UUID is refused before it is used.
func TestCreateImageRefusesBadID(t *testing.T) {
	for _, id := range []string{"../../ims/recipes", "", "3F5B9C2E-1D2A-4B7C-9E8F-0A1B2C3D4E5F", "3f5b9c2e-1d2a-4b7c-9e8f-0a1b2c3d4e5f/x"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(ims.ImageRecord{ID: id, Name: "compute"})
		}))
		_, err := newClient(t, srv.URL).CreateImage(testContext(t), "compute", "x86_64")
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "not a UUID") {
			t.Errorf("CreateImage() with IMS answering id %q = %v, want an error", id, err)
		}
	}
}
