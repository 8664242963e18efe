package s3client

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func TestCheck(t *testing.T) {
	ok := Config{Region: "us-east-1", PartSize: MinPartSize, Concurrency: 4, MaxAttempts: 5}
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"small parts", func(c *Config) { c.PartSize = MinPartSize - 1 }, "below the S3 minimum"},
		{"negative concurrency", func(c *Config) { c.Concurrency = -1 }, "concurrency -1 is negative"},
		{"negative attempts", func(c *Config) { c.MaxAttempts = -1 }, "max attempts -1 is negative"},
		{"ca bundle and client", func(c *Config) { c.CABundle, c.HTTPClient = "/ca.pem", http.DefaultClient }, "set TLS on the given HTTP client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Check()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Check() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewClient(t *testing.T) {
	cfg := Config{
		Endpoint: "http://127.0.0.1:1", Region: "eu-west-1", PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""),
		PartSize:    6 << 20, Concurrency: 3, MaxAttempts: 2, MaxBackoff: time.Second,
	}
	c, err := NewClient(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewClient() = %v", err)
	}
	o := c.Options()
	if aws.ToString(o.BaseEndpoint) != cfg.Endpoint || !o.UsePathStyle || o.Region != cfg.Region {
		t.Errorf("client options: endpoint %q, path style %v, region %q", aws.ToString(o.BaseEndpoint), o.UsePathStyle, o.Region)
	}
	if got := o.Retryer.MaxAttempts(); got != 2 {
		t.Errorf("retryer max attempts = %d, want 2", got)
	}
	if o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired || o.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
		t.Errorf("checksums: request %v, response %v; want only when required", o.RequestChecksumCalculation, o.ResponseChecksumValidation)
	}
	tm := NewUploader(c, cfg)
	if tm == nil {
		t.Fatal("NewUploader() = nil")
	}
	if _, err := NewClient(t.Context(), Config{CABundle: "/nonexistent/ca.pem"}); err == nil || !strings.HasPrefix(err.Error(), "ca bundle: ") {
		t.Errorf("NewClient(missing CA bundle) = %v, want a ca bundle error", err)
	}
}

func responseError(status int, err error) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      err,
	}}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     string
		status   int
		notFound bool
	}{
		{"404", responseError(404, errors.New("x")), "", 404, true},
		{"NoSuchKey", &smithy.GenericAPIError{Code: "NoSuchKey"}, "NoSuchKey", 0, true},
		{"NotFound in a 404", responseError(404, &smithy.GenericAPIError{Code: "NotFound"}), "NotFound", 404, true},
		{"403", responseError(403, &smithy.GenericAPIError{Code: "AccessDenied"}), "AccessDenied", 403, false},
		{"plain", errors.New("connection refused"), "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, status := APICode(tc.err)
			if code != tc.code || status != tc.status {
				t.Errorf("APICode() = %q, %d; want %q, %d", code, status, tc.code, tc.status)
			}
			if got := IsNotFound(tc.err); got != tc.notFound {
				t.Errorf("IsNotFound() = %v, want %v", got, tc.notFound)
			}
		})
	}
}

// TestNewClientReusesConnections: 32 requests at once, three rounds, dial
// 32 connections at most: the idle pool keeps every connection of a round
// for the next (with the SDK's default of 10 per host, each later round
// dialed 22 new ones and closed them after).
func TestNewClientReusesConnections(t *testing.T) {
	const inFlight, rounds = 32, 3
	var dials, arrived atomic.Int64
	gates := make([]chan struct{}, rounds) // closed once a round's requests are all in
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hold each round's requests until all have arrived, so that the
		// round needs inFlight connections at once.
		n := arrived.Add(1)
		round := (n - 1) / inFlight
		if n%inFlight == 0 {
			close(gates[round])
		}
		select {
		case <-gates[round]:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := NewClient(t.Context(), Config{
		Endpoint: srv.URL, Region: "us-east-1", PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""), MaxAttempts: 1,
	})
	if err != nil {
		t.Fatalf("NewClient() = %v", err)
	}
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, inFlight)
		for i := range inFlight {
			wg.Go(func() {
				_, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String(fmt.Sprintf("k%d", i))})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: HeadObject() = %v", round, err)
			}
		}
	}
	if got := dials.Load(); got > inFlight {
		t.Errorf("%d requests, %d at once, dialed %d connections; want at most %d (idle ones reused)", rounds*inFlight, inFlight, got, inFlight)
	}
}
