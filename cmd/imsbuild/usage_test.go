package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/engine"
)

// TestTargetErrorIsTyped: an unknown target is a usage error because of its
// type, wherever it is wrapped, not because its message starts a certain way.
func TestTargetErrorIsTyped(t *testing.T) {
	unknown := &engine.UnknownTargetError{Target: "image.nope", Known: []string{"image.base"}}
	for _, tc := range []struct {
		name  string
		err   error
		usage bool
	}{
		{"bare", unknown, true},
		{"wrapped", fmt.Errorf("plan: %w", unknown), true},
		{"other", errors.New("unknown target-ish message from elsewhere"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := targetError(tc.err, strings.ToUpper)
			var u usageError
			if errors.As(got, &u) != tc.usage {
				t.Fatalf("targetError(%v) = %#v, want usage error %t", tc.err, got, tc.usage)
			}
			if got.Error() != strings.ToUpper(tc.err.Error()) {
				t.Fatalf("targetError(%v) = %q, want it redacted", tc.err, got)
			}
		})
	}
}

// TestUsageErrorsOfABuild: an unknown target and an invalid
// SOURCE_DATE_EPOCH exit 2 with a message that names them.
func TestUsageErrorsOfABuild(t *testing.T) {
	dir := example(t)
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		contains string
	}{
		{"plan unknown target", nil, []string{"plan", ".", "image.nope"}, `unknown target "image.nope"`},
		{"build unknown target", nil, []string{"build", ".", "image.nope"}, `unknown target "image.nope"`},
		{"build bad epoch", []string{"SOURCE_DATE_EPOCH=12abc"}, []string{"build", "."}, `SOURCE_DATE_EPOCH "12abc"`},
		{"plan bad epoch", []string{"SOURCE_DATE_EPOCH=-5"}, []string{"plan", "."}, `SOURCE_DATE_EPOCH "-5"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := imsbuildEnv(t, dir, tc.env, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.contains) {
				t.Fatalf("imsbuild %v = exit %d, want 2 with %q\nstdout: %s\nstderr: %s", tc.args, r.code, tc.contains, r.stdout, r.stderr)
			}
		})
	}
}
