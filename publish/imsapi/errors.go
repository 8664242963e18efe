package imsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Errors that callers classify with errors.Is.
var (
	// ErrTokenRejected: the API answered 401 or 403.
	ErrTokenRejected = errors.New("token rejected")
	// ErrUnreachable: no HTTP answer (refused, reset, timeout, DNS).
	ErrUnreachable = errors.New("ims api unreachable")
	// ErrWrongEndpoint: the URL answered, but not as an IMS API (404 on a
	// collection, or HTML).
	ErrWrongEndpoint = errors.New("not an ims api")
)

// Problem is an RFC 7807 problem details answer, as IMS sends on errors.
type Problem struct {
	Type     string         `json:"type,omitempty"`
	Title    string         `json:"title,omitempty"`
	Status   int            `json:"status,omitempty"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Errors   map[string]any `json:"errors,omitempty"` // per field
}

// String is "title: detail (field: error; …)".
func (p *Problem) String() string {
	var parts []string
	if p.Title != "" && !strings.EqualFold(p.Title, p.Detail) {
		parts = append(parts, p.Title)
	}
	if p.Detail != "" {
		parts = append(parts, p.Detail)
	}
	s := strings.Join(parts, ": ")
	if len(p.Errors) > 0 {
		keys := make([]string, 0, len(p.Errors))
		for k := range p.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fields := make([]string, len(keys))
		for i, k := range keys {
			fields[i] = fmt.Sprintf("%s: %s", k, flatten(p.Errors[k]))
		}
		s += " (" + strings.Join(fields, "; ") + ")"
	}
	return strings.TrimSpace(s)
}

// flatten turns IMS field errors (strings, lists of strings, nested maps)
// into one line.
func flatten(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = flatten(x)
		}
		return strings.Join(s, ", ")
	case map[string]any:
		return (&Problem{Errors: v}).String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// Error is a failed IMS API request: "METHOD URL: status: hint: problem".
type Error struct {
	Method     string
	URL        string
	StatusCode int    // 0 when there was no HTTP answer
	Status     string // "422 Unprocessable Entity"
	Problem    *Problem
	Body       string // the start of a non-problem answer body
	Attempts   int    // > 1 when the request was retried
	Err        error  // the transport or decoding error, if any

	kind       error // ErrTokenRejected, ErrUnreachable, ErrWrongEndpoint or nil
	hint       string
	retryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Method, e.URL)
	if e.Status != "" {
		b.WriteString(": " + e.Status)
	}
	if e.hint != "" {
		b.WriteString(": " + e.hint)
	}
	switch {
	case e.Problem != nil:
		p := *e.Problem
		if p.Title == http.StatusText(e.StatusCode) { // already in Status
			p.Title = ""
		}
		if s := p.String(); s != "" {
			b.WriteString(": " + s)
		}
	case e.Body != "":
		b.WriteString(": " + e.Body)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	var errs []error
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// transient reports whether another attempt may succeed.
func (e *Error) transient() bool {
	switch e.StatusCode {
	case 0:
		return e.kind == ErrUnreachable && !isDNSError(e.Err)
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	}
	return e.StatusCode >= 500
}

// transportError explains an error of http.Client.Do.
func transportError(method, u, endpoint string, err error) *Error {
	e := &Error{Method: method, URL: u, Err: err}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && !isTimeout(err):
		// The caller's context: not the server's fault.
	case errors.Is(err, syscall.ECONNREFUSED):
		e.kind, e.hint = ErrUnreachable, fmt.Sprintf("connection refused (is the endpoint %s right and the IMS server up?)", endpoint)
	case isDNSError(err):
		e.kind, e.hint = ErrUnreachable, fmt.Sprintf("cannot resolve the host of %s (check the endpoint)", endpoint)
	case isTimeout(err):
		e.kind, e.hint = ErrUnreachable, "no answer in time"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		e.kind, e.hint = ErrUnreachable, "connection lost"
	default:
		var ne net.Error
		if errors.As(err, &ne) {
			e.kind = ErrUnreachable
		}
	}
	return e
}

// responseError reads a non-2xx answer into an *Error.
func responseError(method, u, endpoint string, resp *http.Response) *Error {
	e := &Error{Method: method, URL: u, StatusCode: resp.StatusCode, Status: resp.Status}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var p Problem
	if json.Unmarshal(body, &p) == nil && (p.Title != "" || p.Detail != "" || len(p.Errors) > 0) {
		e.Problem = &p
	} else if s := strings.TrimSpace(string(body)); s != "" && !looksLikeHTML(resp, s) {
		e.Body = firstLine(s, 200)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		e.kind, e.hint = ErrTokenRejected, "token rejected (expired, wrong, or without the rights for IMS; get a new token)"
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		if method == http.MethodGet || method == http.MethodPost {
			e.kind, e.hint = ErrWrongEndpoint, fmt.Sprintf("no IMS API here (check the endpoint %s; behind the CSM API gateway it ends in /apis/ims)", endpoint)
		}
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	}
	return e
}

func looksLikeHTML(resp *http.Response, body string) bool {
	return strings.Contains(resp.Header.Get("Content-Type"), "html") || strings.HasPrefix(body, "<")
}

func firstLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func isDNSError(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
