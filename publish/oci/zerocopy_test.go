package oci_test

import (
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
)

// fileBodies records, per blob upload request, whether its body is the
// blob file itself (which net/http can sendfile to the socket).
type fileBodies struct {
	mu            sync.Mutex
	files, others int
}

func (f *fileBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && strings.Contains(req.URL.Path, "/blobs/uploads/") &&
		(req.Method == http.MethodPatch || req.Method == http.MethodPut) && req.ContentLength != 0 {
		_, isFile := req.Body.(*os.File)
		f.mu.Lock()
		if isFile {
			f.files++
		} else {
			f.others++
		}
		f.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// A push through the tiered cache (--cache-from/--cache-to) sends a local
// blob as its file, like a push from the plain local cache.
func TestPublishZeroCopy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) cache.Store
	}{
		{"local", func(t *testing.T) cache.Store { return newStore(t) }},
		{"tiered", func(t *testing.T) cache.Store { return tiered.New(newStore(t), nil, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := newRegistry(t)
			store := tc.store(t)
			img := testImage(t, store, map[string][]byte{
				"rootfs": []byte("rootfs bytes"),
				"kernel": []byte("kernel bytes"),
			})
			rt := &fileBodies{}
			p, err := oci.New(oci.Config{Repository: host + "/zero"}, oci.WithTransport(rt))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(t.Context(), store, []publish.Image{img}); err != nil {
				t.Fatalf("Publish() = %v", err)
			}
			// The one reader is the empty config blob "{}".
			if rt.files != len(img.Outputs) || rt.others != 1 {
				t.Errorf("blob uploads: %d sent as files, %d through readers; want %d files, 1 reader",
					rt.files, rt.others, len(img.Outputs))
			}
		})
	}
}
