package executor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// SSH environments of remote steps. A remote step that opens an SSH
// environment (an interactive image) listens where the executor lets it
// (SSHListenEnv) and says how to reach it on its output, the only channel
// it has back: one marker line, SSHMarker followed by an SSHEndpoint as
// JSON. An SSHExecutor takes that line out of the step's log, makes the
// listener reachable (Kubernetes: a Service) and calls Step.Waiting with
// the address people use.

// SSHListenEnv is the environment variable that tells a remote step where
// its SSH environment listens ("host:port"); unset, it listens where it
// would locally.
const SSHListenEnv = "IMSBUILD_SSH_LISTEN"

// SSHMarker starts the line a remote step writes when its SSH environment
// waits for a person. It is not meant for people: executors remove it
// from the step's log.
const SSHMarker = "imsbuild-internal: ssh-waiting "

// MaxSSHMarkerLine bounds a marker line; a longer line is log text.
const MaxSSHMarkerLine = 4096

// SSHEndpoint is an SSH environment as the remote step sees it, and as
// the executor rewrites it for people (Host and Port); engine.SSHInfo,
// the waiting event's, is this type.
type SSHEndpoint struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	User         string `json:"user"`
	HostKey      string `json:"host_key_fingerprint"`
	Jail         bool   `json:"jail"`
	ImageRoot    string `json:"image_root"`
	CompleteFile string `json:"complete_file"`
	FailedFile   string `json:"failed_file"`
	Debug        bool   `json:"debug,omitempty"`
	// Set by the executor: what it made to reach the environment.
	Service string `json:"service,omitempty"`  // namespace/name (Kubernetes)
	DNSName string `json:"dns_name,omitempty"` // the Service's cluster DNS name
}

// SSHExecutor is an Executor that makes a remote step's SSH environment
// reachable: it sets SSHListenEnv for the step when Step.Waiting is set,
// reads the marker line and calls Step.Waiting.
type SSHExecutor interface {
	Executor
	// ReachesSSH reports whether Run does so (a fixed answer).
	ReachesSSH() bool
}

// ReachesSSH reports whether x lets people into a remote step's SSH
// environment: an SSHExecutor that does.
func ReachesSSH(x Executor) bool {
	r, ok := x.(SSHExecutor)
	return ok && r.ReachesSSH()
}

// FormatSSHMarker is the marker line (with its newline) for ep.
func FormatSSHMarker(ep SSHEndpoint) string {
	b, _ := json.Marshal(ep) // a struct of strings, ints and bools
	return SSHMarker + string(b) + "\n"
}

// ParseSSHMarker reads line (without its newline), written by a remote
// step and so hostile: ok is false when line is not a marker line, and
// err says why a marker line is unusable. A usable endpoint has a host
// that is an IP address, a port in 1-65535, and short printable strings.
func ParseSSHMarker(line []byte) (ep SSHEndpoint, ok bool, err error) {
	rest, ok := bytes.CutPrefix(line, []byte(SSHMarker))
	if !ok {
		return SSHEndpoint{}, false, nil
	}
	if len(line) > MaxSSHMarkerLine {
		return SSHEndpoint{}, true, fmt.Errorf("ssh marker line of %d bytes, at most %d", len(line), MaxSSHMarkerLine)
	}
	d := json.NewDecoder(bytes.NewReader(rest))
	d.DisallowUnknownFields()
	if err := d.Decode(&ep); err != nil {
		return SSHEndpoint{}, true, fmt.Errorf("ssh marker: %w", err)
	}
	if d.More() {
		return SSHEndpoint{}, true, errors.New("ssh marker: text after the endpoint")
	}
	switch {
	case net.ParseIP(ep.Host) == nil:
		return SSHEndpoint{}, true, fmt.Errorf("ssh marker: host %q is not an IP address", ep.Host)
	case ep.Port < 1 || ep.Port > 65535:
		return SSHEndpoint{}, true, fmt.Errorf("ssh marker: port %d out of range", ep.Port)
	case ep.Service != "" || ep.DNSName != "":
		return SSHEndpoint{}, true, errors.New("ssh marker: a step does not name a service")
	}
	for _, s := range []string{ep.User, ep.HostKey, ep.ImageRoot, ep.CompleteFile, ep.FailedFile} {
		if !printable(s) {
			return SSHEndpoint{}, true, fmt.Errorf("ssh marker: %q is not short printable text", s)
		}
	}
	return ep, true, nil
}

// printable reports whether s is at most 256 bytes of printable UTF-8.
func printable(s string) bool {
	if len(s) > 256 || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 })
}
