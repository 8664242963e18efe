package provenance

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPolicy(t *testing.T) {
	files, b, env, key := signed(t)
	v, err := Verify(t.Context(), env, key.Public(), files)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		p    Policy
		want string // "" for no violation
	}{
		{"empty", Policy{}, ""},
		{"expected", Policy{BuilderIDs: []string{"x", b.BuilderID}, Dependencies: map[string]digest.Digest{"recipe.node": sha("tree")}}, ""},
		{"other builder", Policy{BuilderIDs: []string{"https://ci.example/trusted"}}, `builder "https://ci.example/runner/7" is not one of ["https://ci.example/trusted"]`},
		{"changed dependency", Policy{Dependencies: map[string]digest.Digest{"recipe.node": sha("other tree")}}, "dependency recipe.node is sha256:" + sha("tree").Encoded() + ", want " + string(sha("other tree"))},
		{"missing dependency", Policy{Dependencies: map[string]digest.Digest{"lock": sha("lock")}}, "dependency lock is not recorded"},
		{"all at once", Policy{BuilderIDs: []string{"y"}, Dependencies: map[string]digest.Digest{"lock": sha("lock")}}, `builder "https://ci.example/runner/7" is not one of ["y"]; dependency lock is not recorded`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Check(tc.p)
			if tc.want == "" {
				if err != nil {
					t.Errorf("Check() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrPolicy) || !strings.HasSuffix(err.Error(), tc.want) {
				t.Errorf("Check() = %v, want ErrPolicy ending in %q", err, tc.want)
			}
		})
	}
}
