package executor

import (
	"strings"
	"testing"
)

var testEndpoint = SSHEndpoint{Host: "10.213.0.7", Port: 40123, User: "root", HostKey: "SHA256:abc",
	Jail: true, ImageRoot: "/", CompleteFile: "/tmp/complete", FailedFile: "/tmp/failed"}

func TestParseSSHMarker(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok, err    bool
	}{
		{"round trip", strings.TrimSuffix(FormatSSHMarker(testEndpoint), "\n"), true, false},
		{"ipv6", SSHMarker + `{"host":"fd00::7","port":22}`, true, false},
		{"text", "building image.compute", false, false},
		{"marker in a line", "echo " + SSHMarker + `{"host":"10.0.0.1","port":22}`, false, false},
		{"hostname", SSHMarker + `{"host":"evil.example","port":22}`, true, true},
		{"port 0", SSHMarker + `{"host":"10.0.0.1","port":0}`, true, true},
		{"port too large", SSHMarker + `{"host":"10.0.0.1","port":65536}`, true, true},
		{"unknown field", SSHMarker + `{"host":"10.0.0.1","port":22,"cmd":"rm"}`, true, true},
		{"names a service", SSHMarker + `{"host":"10.0.0.1","port":22,"service":"ns/x"}`, true, true},
		{"control characters", SSHMarker + `{"host":"10.0.0.1","port":22,"user":"r\u001b[2J"}`, true, true},
		{"trailing text", SSHMarker + `{"host":"10.0.0.1","port":22} {}`, true, true},
		{"not json", SSHMarker + `host=10.0.0.1`, true, true},
		{"too long", SSHMarker + `{"host":"10.0.0.1","port":22,"user":"` + strings.Repeat("a", MaxSSHMarkerLine) + `"}`, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, ok, err := ParseSSHMarker([]byte(tc.line))
			if ok != tc.ok || (err != nil) != tc.err {
				t.Fatalf("ParseSSHMarker() = %+v, %v, %v; want ok %v, error %v", ep, ok, err, tc.ok, tc.err)
			}
			if tc.name == "round trip" && ep != testEndpoint {
				t.Errorf("ParseSSHMarker(FormatSSHMarker(%+v)) = %+v", testEndpoint, ep)
			}
		})
	}
}

// FuzzParseSSHMarker: the parser reads pod output; whatever it accepts is
// an IP address, a port in range and printable strings, and formats back
// to itself.
func FuzzParseSSHMarker(f *testing.F) {
	f.Add([]byte(strings.TrimSuffix(FormatSSHMarker(testEndpoint), "\n")))
	f.Add([]byte(SSHMarker + `{"host":"::1","port":1,"user":"\u00e9"}`))
	f.Add([]byte(SSHMarker + `{"host":"1.2.3.4","port":22,"debug":true}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		ep, ok, err := ParseSSHMarker(line)
		if !ok || err != nil {
			return
		}
		if ep.Port < 1 || ep.Port > 65535 || ep.Service != "" || ep.DNSName != "" {
			t.Fatalf("accepted %+v", ep)
		}
		for _, s := range []string{ep.Host, ep.User, ep.HostKey, ep.ImageRoot, ep.CompleteFile, ep.FailedFile} {
			if strings.ContainsAny(s, "\n\r\x1b\x00") {
				t.Fatalf("accepted control characters in %q", s)
			}
		}
		again, ok, err := ParseSSHMarker([]byte(strings.TrimSuffix(FormatSSHMarker(ep), "\n")))
		if !ok || err != nil || again != ep {
			t.Fatalf("round trip of %+v: %+v, %v, %v", ep, again, ok, err)
		}
	})
}
