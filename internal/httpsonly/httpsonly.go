// Package httpsonly keeps go-containerregistry from talking plain HTTP to a
// registry the user did not mark insecure. ggcr by itself uses plain HTTP for
// RFC 1918 addresses and *.localhost names (name.Registry's Scheme), which
// would send images and credentials to a private-range registry unencrypted
// without the user asking for it; imsbuild allows it only on loopback.
package httpsonly

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PlainHTTPAllowed reports whether imsbuild talks plain HTTP to registry
// (host[:port]) without insecure = true: only on loopback, where nobody on
// the network can read or change the traffic.
func PlainHTTPAllowed(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpsOnly upgrades the plain-HTTP requests ggcr sends to registry to
// HTTPS, unless PlainHTTPAllowed. Requests to other hosts (redirects to
// blob storage) pass unchanged.
type httpsOnly struct {
	registry string
	next     http.RoundTripper
}

func (t httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && strings.EqualFold(req.URL.Host, t.registry) && !PlainHTTPAllowed(t.registry) {
		req = req.Clone(req.Context())
		req.URL.Scheme = "https"
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil && req.URL.Scheme == "https" && strings.EqualFold(req.URL.Host, t.registry) && !PlainHTTPAllowed(t.registry) {
		return nil, fmt.Errorf("%w (a registry without TLS needs insecure = true)", err)
	}
	return resp, err
}

// Transport is the transport for registry (host[:port]): rt (or ggcr's
// default), restricted to HTTPS unless insecure.
func Transport(rt http.RoundTripper, registry string, insecure bool) http.RoundTripper {
	if rt == nil {
		rt = remote.DefaultTransport
	}
	if insecure {
		return rt
	}
	return httpsOnly{registry: registry, next: rt}
}
