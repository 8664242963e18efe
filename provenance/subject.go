package provenance

import (
	"fmt"
	"slices"
	"strings"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/proto"
)

// WithSubject returns the verified statement with one more subject, name
// with digest d, as canonical JSON ready for Sign; v is left unchanged.
// A publisher uses it to attest what it made of the artifacts, e.g. the OCI
// image manifest that lists them, which `cosign verify-attestation` wants
// as a subject. A subject of that name already there is an error.
func (v *Verified) WithSubject(name string, d digest.Digest) ([]byte, error) {
	rd, err := descriptor(name, "", d)
	if err != nil {
		return nil, fmt.Errorf("provenance: subject: %w", err)
	}
	st := proto.Clone(v.Statement).(*intoto.Statement)
	for _, s := range st.GetSubject() {
		if s.GetName() == name {
			return nil, fmt.Errorf("provenance: subject %q twice", name)
		}
	}
	st.Subject = append(st.Subject, rd)
	slices.SortFunc(st.Subject, func(x, y *intoto.ResourceDescriptor) int { return strings.Compare(x.Name, y.Name) })
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	return canonical(st)
}
