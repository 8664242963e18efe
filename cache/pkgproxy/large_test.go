package pkgproxy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"testing"
)

// bigSize is the package size of the streaming tests.
const bigSize = 64 << 20

// bigReader yields the bigSize bytes of the big package.
func bigReader() io.Reader {
	chunk := content(9, 1<<20)
	rs := make([]io.Reader, bigSize/len(chunk))
	for i := range rs {
		rs[i] = bytes.NewReader(chunk)
	}
	return io.MultiReader(rs...)
}

// bigMirror serves one bigSize package, generated while sending.
func bigMirror(t testing.TB) (url string, sum [32]byte) {
	h := sha256.New()
	io.Copy(h, bigReader())
	copy(sum[:], h.Sum(nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		io.Copy(w, bigReader())
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/pool/main/b/big_1.0_amd64.deb", sum
}

// fetchSum downloads rawURL through c and returns its sha256 and size.
func fetchSum(t testing.TB, c *http.Client, rawURL string) ([32]byte, int64) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", rawURL, resp.StatusCode, err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n
}

// TestLargePackageStreams checks that a 64 MiB package goes through a miss
// and a hit intact without the proxy holding it in memory.
func TestLargePackageStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB transfer")
	}
	rawURL, want := bigMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)
	for _, what := range []string{"miss", "hit"} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		sum, n := fetchSum(t, client, rawURL)
		stats(t, p)
		runtime.ReadMemStats(&after)
		if sum != want || n != bigSize {
			t.Fatalf("%s: %d bytes with another digest, want the mirror's %d", what, n, bigSize)
		}
		// Everything in this process (mirror, proxy, store, client)
		// allocates less than a quarter of the package.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bigSize/4 {
			t.Errorf("%s: allocated %d bytes for a %d-byte package: is it buffered?", what, alloc, bigSize)
		}
	}
	if st := p.Stats(); st.Hits != 1 || st.Stored != 1 || st.BytesFromCache != bigSize || st.BytesFromUpstream != bigSize {
		t.Errorf("Stats() = %+v, want 1 hit, 1 stored, %d bytes each way", st, bigSize)
	}
}

func BenchmarkMiss(b *testing.B) {
	rawURL, _ := bigMirror(b)
	b.SetBytes(bigSize)
	for b.Loop() {
		c := newCache(b) // empty: a miss
		p, err := Start(b.Context(), Options{Store: c, Actions: c.Actions()})
		if err != nil {
			b.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustParse(b, p.URL()))}}
		fetchSum(b, client, rawURL)
		client.CloseIdleConnections()
		p.Close()
	}
}

func BenchmarkHit(b *testing.B) {
	rawURL, _ := bigMirror(b)
	c := newCache(b)
	p, err := Start(b.Context(), Options{Store: c, Actions: c.Actions()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustParse(b, p.URL()))}}
	defer client.CloseIdleConnections()
	fetchSum(b, client, rawURL)
	b.SetBytes(bigSize)
	for b.Loop() {
		fetchSum(b, client, rawURL)
	}
	if p.Stats().Hits == 0 {
		b.Fatal("no hits")
	}
}

// BenchmarkDirect is the baseline: the mirror without the proxy.
func BenchmarkDirect(b *testing.B) {
	rawURL, _ := bigMirror(b)
	b.SetBytes(bigSize)
	for b.Loop() {
		fetchSum(b, http.DefaultClient, rawURL)
	}
}

func mustParse(t testing.TB, rawURL string) *url.URL {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// smallMirror serves packages of smallSize bytes under any name: the
// per-request cost of the proxy (apt installs hundreds of small packages,
// one at a time).
const smallSize = 200 << 10

func smallMirror(b *testing.B) string {
	data := content(11, smallSize)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}

// BenchmarkSmallMiss fetches a new small package per iteration: a miss.
func BenchmarkSmallMiss(b *testing.B) {
	base := smallMirror(b)
	c := newCache(b)
	p, err := Start(b.Context(), Options{Store: c, Actions: c.Actions()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustParse(b, p.URL()))}}
	defer client.CloseIdleConnections()
	b.SetBytes(smallSize)
	i := 0
	for b.Loop() {
		i++
		fetchSum(b, client, base+"/pool/s/s_"+strconv.Itoa(i)+"_amd64.deb")
	}
}

// BenchmarkSmallHit fetches one cached small package per iteration.
func BenchmarkSmallHit(b *testing.B) {
	base := smallMirror(b)
	c := newCache(b)
	p, err := Start(b.Context(), Options{Store: c, Actions: c.Actions()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustParse(b, p.URL()))}}
	defer client.CloseIdleConnections()
	fetchSum(b, client, base+"/pool/s/s_1_amd64.deb")
	b.SetBytes(smallSize)
	for b.Loop() {
		fetchSum(b, client, base+"/pool/s/s_1_amd64.deb")
	}
}

// BenchmarkSmallDirect is the baseline of the small ones.
func BenchmarkSmallDirect(b *testing.B) {
	base := smallMirror(b)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	b.SetBytes(smallSize)
	i := 0
	for b.Loop() {
		i++
		fetchSum(b, client, base+"/pool/s/s_"+strconv.Itoa(i)+"_amd64.deb")
	}
}
