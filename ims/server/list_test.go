package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

// TestListGzip: a list is gzip-compressed for a client that accepts it,
// decompresses to the very bytes an identity list answers, follows a
// write at once, and stays plain for a client that refuses gzip (q=0).
func TestListGzip(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Images.Update(func(tx store.Tx[store.Image]) error {
		for i := range 300 {
			if err := tx.Put(imageRecord(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: st, Blobs: blob.New(nil), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	// A transport that leaves the encoding to the test.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(acceptEncoding string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", ts.URL+"/v3/images", nil)
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v3/images = %d %s", resp.StatusCode, body)
		}
		if got := resp.Header.Get("Vary"); got != "Accept-Encoding" {
			t.Errorf("Vary = %q, want Accept-Encoding", got)
		}
		return resp, body
	}
	gunzip := func(b []byte) []byte {
		t.Helper()
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip body: %v", err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("gzip body: %v", err)
		}
		return out
	}
	check := func(wantRecords int) {
		t.Helper()
		_, plain := get("")
		if n := len(decodeList(t, plain)); n != wantRecords {
			t.Fatalf("identity list has %d records, want %d", n, wantRecords)
		}
		for _, ae := range []string{"gzip", "gzip, deflate", "br;q=1.0, GZIP ;q=0.5"} {
			resp, body := get(ae)
			if got := resp.Header.Get("Content-Encoding"); got != "gzip" {
				t.Fatalf("Accept-Encoding %q: Content-Encoding = %q, want gzip", ae, got)
			}
			if len(body)*5 > len(plain) {
				t.Errorf("Accept-Encoding %q: %d bytes compressed, %d plain", ae, len(body), len(plain))
			}
			if got := gunzip(body); !bytes.Equal(got, plain) {
				t.Fatalf("Accept-Encoding %q: the gzip list decompresses to %d bytes that differ from the %d-byte identity list", ae, len(got), len(plain))
			}
		}
		for _, ae := range []string{"gzip;q=0", "deflate", "identity"} {
			resp, body := get(ae)
			if got := resp.Header.Get("Content-Encoding"); got != "" {
				t.Fatalf("Accept-Encoding %q: Content-Encoding = %q, want none", ae, got)
			}
			if !bytes.Equal(body, plain) {
				t.Fatalf("Accept-Encoding %q: body differs from the identity list", ae)
			}
		}
	}
	check(300)
	// A write changes the compressed list too.
	resp, err := client.Post(ts.URL+"/v3/images", "application/json", strings.NewReader(`{"name":"new"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v3/images = %d", resp.StatusCode)
	}
	check(301)
	if err := st.Images.Remove(imageRecord(7).ID); err != nil {
		t.Fatal(err)
	}
	check(300)
}
