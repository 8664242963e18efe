package s3

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/publish"
)

// putLog records the paths of PUT requests in order.
type putLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *putLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		l.mu.Lock()
		l.paths = append(l.paths, r.URL.Path)
		l.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// The SBOM goes to <id>/sbom.spdx.json as application/spdx+json and the
// signed provenance to <id>/provenance.intoto.jsonl as a DSSE envelope,
// both before the manifest, which lists neither (IMS validates the
// artifact types).
func TestPublishSBOMBeforeManifest(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	img := testImages(t, store)[1]
	docs := map[string][]byte{
		ims.SBOMFile:       []byte(`{"spdxVersion":"SPDX-2.3","name":"node-compute"}` + "\n"),
		ims.ProvenanceFile: []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}` + "\n"),
	}
	types := map[string]string{ims.SBOMFile: ims.MediaTypeSPDX, ims.ProvenanceFile: ims.MediaTypeDSSE}
	for name, doc := range docs {
		a := putBytes(t, store, doc)
		a.MediaType = types[name]
		img.Outputs[name] = a
	}
	var log putLog
	cfg := testConfig(srv)
	cfg.HTTPClient = &http.Client{Transport: &log}
	p := newPublisher(t, cfg)
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}

	c := srv.Client(t)
	// checkPublished wants exactly the IMS artifacts in the manifest.
	checkPublished(t, c, DefaultBucket, "", []publish.Image{img})
	manifestAt := slices.IndexFunc(log.paths, func(p string) bool { return strings.HasSuffix(p, "/"+img.ID+"/"+ims.ManifestFile) })
	for name, doc := range docs {
		key := img.ID + "/" + name
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(DefaultBucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("GetObject(%s) error: %v", key, err)
		}
		out.Body.Close()
		if ct := aws.ToString(out.ContentType); ct != types[name] {
			t.Errorf("%s content type = %q, want %q", key, ct, types[name])
		}
		o, err := getObject(t, c, DefaultBucket, key)
		if err != nil || string(o.data) != string(doc) || o.meta[MetaSHA256] != img.Outputs[name].Digest.Encoded() {
			t.Errorf("%s = %q meta %v, %v; want the document with its sha256", key, o.data, o.meta, err)
		}
		at := slices.IndexFunc(log.paths, func(p string) bool { return strings.HasSuffix(p, "/"+key) })
		if at < 0 || manifestAt < 0 || at > manifestAt {
			t.Errorf("PUTs %v: want %s before the manifest", log.paths, name)
		}
	}
}
