package k8stest

import (
	"regexp"
	"strings"
	"testing"
)

// A namespace name is a DNS label: lowercase alphanumerics and '-', at most
// 63 characters; generateName appends 5.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestNamespacePrefix(t *testing.T) {
	for _, tc := range []struct{ test, want string }{
		{"TestKubernetesJob", "t-testkubernetesjob-"},
		{"TestKubernetesBuild/busybox_9_images#01", "t-testkubernetesbuild-busybox-9-images-01-"},
		{"Test_" + strings.Repeat("X", 80), "t-test-" + strings.Repeat("x", 35) + "-"},
		{"Test/-/" + strings.Repeat("a", 32) + "/b", "t-test-" + strings.Repeat("a", 32) + "-b-"},
	} {
		got := namespacePrefix(tc.test)
		if got != tc.want {
			t.Errorf("namespacePrefix(%q) = %q, want %q", tc.test, got, tc.want)
		}
		if name := got + "abcde"; len(name) > 63 || !dnsLabel.MatchString(name) {
			t.Errorf("namespacePrefix(%q) + suffix = %q: not a DNS label", tc.test, name)
		}
	}
}
