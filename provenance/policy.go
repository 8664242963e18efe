package provenance

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ErrPolicy is wrapped by every policy violation.
var ErrPolicy = errors.New("provenance violates the policy")

// Policy is what a verifier expects of a verified provenance beyond its
// signature: who built it and from what.
type Policy struct {
	// BuilderIDs are the accepted runDetails.builder.id values; empty
	// accepts any.
	BuilderIDs []string
	// Dependencies are resolved dependencies that must be present with
	// these digests (a recipe tree, a lock file, a parent image).
	Dependencies map[string]digest.Digest
}

// Check reports every way v violates p, in one error (nil if none).
func (v *Verified) Check(p Policy) error {
	var problems []string
	id := v.Provenance.GetRunDetails().GetBuilder().GetId()
	if len(p.BuilderIDs) > 0 && !slices.Contains(p.BuilderIDs, id) {
		problems = append(problems, fmt.Sprintf("builder %q is not one of %q", id, p.BuilderIDs))
	}
	got := map[string]string{}
	for _, d := range v.Provenance.GetBuildDefinition().GetResolvedDependencies() {
		got[d.GetName()] = d.GetDigest()["sha256"]
	}
	for _, name := range slices.Sorted(maps.Keys(p.Dependencies)) {
		want := p.Dependencies[name]
		have, ok := got[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("dependency %s is not recorded", name))
		case want.Algorithm() != digest.SHA256 || have != want.Encoded():
			problems = append(problems, fmt.Sprintf("dependency %s is sha256:%s, want %s", name, have, want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrPolicy, strings.Join(problems, "; "))
	}
	return nil
}
