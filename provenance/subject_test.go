package provenance

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

// WithSubject adds a subject that Verify then matches, keeps the others
// and the predicate, is deterministic and refuses a duplicate name.
func TestWithSubject(t *testing.T) {
	_, b, env, key := signed(t)
	v, err := VerifyDigests(t.Context(), env, key.Public(), map[string]digest.Digest{"rootfs": b.Subjects[subjectIndex(b, "rootfs")].Digest})
	if err != nil {
		t.Fatal(err)
	}
	m := digest.FromString("image manifest")
	st, err := v.WithSubject("registry.example/hpc/compute", m)
	if err != nil {
		t.Fatalf("WithSubject() = %v", err)
	}
	if again, _ := v.WithSubject("registry.example/hpc/compute", m); string(again) != string(st) {
		t.Errorf("WithSubject() is not deterministic:\n%s\n%s", st, again)
	}
	if len(v.Statement.GetSubject()) != len(b.Subjects) {
		t.Errorf("WithSubject() changed its receiver: %d subjects", len(v.Statement.GetSubject()))
	}
	env2, err := Sign(t.Context(), st, key)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]digest.Digest{"registry.example/hpc/compute": m}
	for _, s := range b.Subjects {
		want[s.Name] = s.Digest
	}
	v2, err := VerifyDigests(t.Context(), env2, key.Public(), want)
	if err != nil {
		t.Fatalf("VerifyDigests(new statement) = %v", err)
	}
	if got, want := v2.Provenance.GetRunDetails().GetBuilder().GetId(), b.BuilderID; got != want {
		t.Errorf("builder id = %q, want %q", got, want)
	}
	if _, err := v.WithSubject("rootfs", m); err == nil {
		t.Error("WithSubject(an existing name) = nil, want an error")
	}
	if _, err := v.WithSubject("x", "sha512:00"); err == nil {
		t.Error("WithSubject(a bad digest) = nil, want an error")
	}
	if _, err := VerifyDigests(t.Context(), env2, key.Public(), map[string]digest.Digest{"registry.example/hpc/compute": digest.FromString("other")}); !errors.Is(err, ErrSubject) {
		t.Errorf("VerifyDigests(another manifest) = %v, want ErrSubject", err)
	}
}
