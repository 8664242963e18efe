package oci_test

import (
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

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

// A blob that is a local file (Blobs.Path) is sent as that file, which
// net/http can sendfile to the socket; one that is not goes through
// Blobs.Open. engine's TestPublishBlobsPath checks that the cache adapter
// finds the file of a local blob through the tiered cache too.
func TestPublishZeroCopy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noPaths bool
	}{
		{"local files", false},
		{"no local files", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := newRegistry(t)
			store := newStore(t)
			store.NoPaths = tc.noPaths
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
			// The empty config blob "{}" always goes through a reader.
			wantFiles, wantOthers := len(img.Outputs), 1
			if tc.noPaths {
				wantFiles, wantOthers = 0, len(img.Outputs)+1
			}
			if rt.files != wantFiles || rt.others != wantOthers {
				t.Errorf("blob uploads: %d sent as files, %d through readers; want %d files, %d readers",
					rt.files, rt.others, wantFiles, wantOthers)
			}
			for name, a := range img.Outputs {
				if got := store.Opens(a.Digest); tc.noPaths != (got > 0) {
					t.Errorf("%s opened %d times through Blobs.Open with NoPaths=%t", name, got, tc.noPaths)
				}
			}
		})
	}
}
