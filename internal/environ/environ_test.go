package environ

import (
	"slices"
	"testing"
)

func TestWithout(t *testing.T) {
	env := []string{"PATH=/bin", "SOURCE_DATE_EPOCH=0", "SOURCE_DATE_EPOCHX=1", "HOME=/root", "SOURCE_DATE_EPOCH=2"}
	got := Without(env, "SOURCE_DATE_EPOCH", "HOME")
	want := []string{"PATH=/bin", "SOURCE_DATE_EPOCHX=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("Without = %q, want %q", got, want)
	}
	if env[1] != "SOURCE_DATE_EPOCH=0" {
		t.Fatalf("Without changed its input: %q", env)
	}
}
