package imsapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultAPIVersion  = "v3"
	DefaultMaxAttempts = 4
	DefaultBackoff     = 500 * time.Millisecond
	DefaultTimeout     = 60 * time.Second // of each request, with the default HTTP client

	maxBackoff    = 10 * time.Second
	maxRetryAfter = 30 * time.Second
	maxErrorBody  = 64 << 10
)

// Config says which IMS API to talk to and how.
type Config struct {
	// Endpoint is the IMS API base URL: "https://api-gw.example/apis/ims"
	// behind the CSM gateway, or "http://127.0.0.1:port" for imsbuild serve.
	Endpoint string
	// Token is the bearer token sent with every request ("" sends none).
	Token string
	// CABundle is a PEM file of certificates to trust, besides the system
	// ones, for the endpoint's TLS (a site CA in front of the API gateway).
	CABundle string
	// HTTPClient sends the requests; default a client with a 60 s timeout.
	// It cannot be combined with CABundle.
	HTTPClient *http.Client
	// APIVersion is "v3" (default) or "v2".
	APIVersion string
	// MaxAttempts bounds the attempts of one request; default 4.
	MaxAttempts int
	// Backoff is the wait after the first failed attempt, doubled after each
	// further one (at most 10 s); default 500 ms. A Retry-After header of a
	// 429 or 503 answer takes precedence, up to 30 s.
	Backoff time.Duration
}

// Client talks to one IMS API. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string // endpoint + "/" + version, without a trailing slash
}

// New validates cfg and returns a client. It makes no request.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	switch {
	case cfg.Endpoint == "":
		return nil, fmt.Errorf("ims api: no endpoint")
	case err != nil:
		return nil, fmt.Errorf("ims api endpoint %q: %w", cfg.Endpoint, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("ims api endpoint %q: want an http:// or https:// URL", cfg.Endpoint)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("ims api endpoint %q: must not have a query or fragment", cfg.Endpoint)
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if cfg.APIVersion != "v3" && cfg.APIVersion != "v2" {
		return nil, fmt.Errorf("ims api version %q: want v3 or v2", cfg.APIVersion)
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxAttempts < 0 {
		return nil, fmt.Errorf("ims api: max attempts %d is negative", cfg.MaxAttempts)
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Backoff < 0 {
		return nil, fmt.Errorf("ims api: backoff %v is negative", cfg.Backoff)
	}
	switch {
	case cfg.CABundle != "" && cfg.HTTPClient != nil:
		return nil, fmt.Errorf("ims api: a CA bundle cannot be combined with a given HTTP client")
	case cfg.CABundle != "":
		tr, err := caTransport(cfg.CABundle)
		if err != nil {
			return nil, err
		}
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout, Transport: tr}
	case cfg.HTTPClient == nil:
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, fmt.Errorf("ims api: token contains a line break")
	}
	return &Client{cfg: cfg, base: strings.TrimSuffix(cfg.Endpoint, "/") + "/" + cfg.APIVersion}, nil
}

// caTransport is the default transport trusting the system roots and the
// certificates of the PEM file bundle.
func caTransport(bundle string) (*http.Transport, error) {
	pem, err := os.ReadFile(bundle)
	if err != nil {
		return nil, fmt.Errorf("ims api ca bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ims api ca bundle %s: no PEM certificate in it", bundle)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr, nil
}

// Endpoint returns the configured endpoint.
func (c *Client) Endpoint() string { return c.cfg.Endpoint }

// url returns the URL of a collection such as "images".
func (c *Client) url(collection string) string { return c.base + "/" + collection }

// send makes one request. A 2xx response is passed to decode; anything else
// becomes an *Error.
func (c *Client) send(ctx context.Context, method, u string, body []byte, decode func(io.Reader) error) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return &Error{Method: method, URL: u, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return transportError(method, u, c.cfg.Endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(method, u, c.cfg.Endpoint, resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return &Error{Method: method, URL: u, StatusCode: resp.StatusCode, Status: resp.Status, kind: ErrWrongEndpoint,
			hint: fmt.Sprintf("the answer is %s, not IMS JSON (is %s an IMS API?)", mt, c.cfg.Endpoint)}
	}
	if err := decode(resp.Body); err != nil {
		return &Error{Method: method, URL: u, StatusCode: resp.StatusCode, Status: resp.Status,
			hint: "decode the answer", Err: err}
	}
	// Drain so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return nil
}

// retry runs attempt until it succeeds, fails for good, or MaxAttempts
// attempts failed; the error of the last attempt records the count.
func (c *Client) retry(ctx context.Context, attempt func() error) error {
	wait := c.cfg.Backoff
	for n := 1; ; n++ {
		err := attempt()
		if err == nil {
			return nil
		}
		e, ok := err.(*Error)
		if !ok || !e.transient() || n >= c.cfg.MaxAttempts || ctx.Err() != nil {
			if ok && n > 1 {
				e.Attempts = n
			}
			return err
		}
		d := wait
		if e.retryAfter > 0 {
			d = e.retryAfter
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			e.Attempts = n
			return fmt.Errorf("%w; gave up waiting to retry: %w", e, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}

// list streams the JSON array at collection into each, one record at a
// time; each returns false to stop early.
func list[T any](ctx context.Context, c *Client, collection string, each func(*T) bool) error {
	u := c.url(collection)
	return c.retry(ctx, func() error {
		return c.send(ctx, http.MethodGet, u, nil, func(r io.Reader) error {
			dec := json.NewDecoder(r)
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			if tok == nil { // null: no records
				return nil
			}
			if d, ok := tok.(json.Delim); !ok || d != '[' {
				return fmt.Errorf("want a JSON array of records, got %v", tok)
			}
			for dec.More() {
				var rec T
				if err := dec.Decode(&rec); err != nil {
					return err
				}
				if !each(&rec) {
					return nil
				}
			}
			_, err = dec.Token()
			return err
		})
	})
}

// create POSTs body to collection once and decodes the created record.
func create[T any](ctx context.Context, c *Client, collection string, body any) (*T, error) {
	u := c.url(collection)
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var rec T
	err = c.send(ctx, http.MethodPost, u, data, func(r io.Reader) error {
		return json.NewDecoder(r).Decode(&rec)
	})
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// parseRetryAfter reads a Retry-After of seconds (dates are ignored).
func parseRetryAfter(v string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s < 0 {
		return 0
	}
	return min(time.Duration(s)*time.Second, maxRetryAfter)
}
