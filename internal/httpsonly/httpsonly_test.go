package httpsonly

import "testing"

func TestPlainHTTPAllowed(t *testing.T) {
	for reg, want := range map[string]bool{
		"127.0.0.1:5000":      true,
		"127.8.9.10":          true,
		"[::1]:5000":          true,
		"localhost:5000":      true,
		"LOCALHOST":           true,
		"10.0.0.1:5000":       false,
		"172.16.0.1":          false,
		"192.168.1.1:443":     false,
		"reg.localhost:5000":  false,
		"registry.example":    false,
		"127.0.0.1.nip.io":    false,
		"localhost.evil.test": false,
		"[fd00::1]:5000":      false,
	} {
		if got := PlainHTTPAllowed(reg); got != want {
			t.Errorf("PlainHTTPAllowed(%q) = %t, want %t", reg, got, want)
		}
	}
}
