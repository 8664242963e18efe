package provenance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Identifiers of what this package writes.
const (
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// PredicateType is SLSA Provenance v1 (cosign's --type slsaprovenance1).
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType names the meaning of the parameters below: an image step of
	// imsbuild. A change of their layout gets a new version.
	BuildType = "https://github.com/imsbuild/imsbuild/buildtypes/image/v1"
)

// An Artifact is a subject of the provenance: an output file by name
// ("rootfs", "kernel", "initrd", "manifest.json") and its sha256 digest.
type Artifact struct {
	Name   string
	Digest digest.Digest
}

// A Dependency is a resolved input: a recipe tree, a repository's metadata,
// the lock file, the builder image, a parent image.
type Dependency struct {
	Name   string
	URI    string // optional
	Digest digest.Digest
}

// Build is what a provenance statement records about one build step.
type Build struct {
	// Subjects are the step's outputs; at least one.
	Subjects []Artifact
	// ExternalParameters are the inputs a user controls: the build files
	// and variables (sensitive values redacted by the caller). Any value
	// that encodes as a JSON object.
	ExternalParameters any
	// InternalParameters are the inputs imsbuild chose: the step's cache
	// key preimage (canonical JSON of an object), or nil.
	InternalParameters json.RawMessage
	// ResolvedDependencies are the resolved inputs, by digest.
	ResolvedDependencies []Dependency
	// BuilderID identifies the builder (a URI: the host or CI runner that
	// ran imsbuild).
	BuilderID string
	// Version is imsbuild's version, recorded in builder.version.
	Version string
	// InvocationID, StartedOn and FinishedOn are optional run metadata.
	// They make the statement differ between two runs of the same build;
	// leave them zero for a reproducible statement.
	InvocationID          string
	StartedOn, FinishedOn time.Time
}

// Statement returns the in-toto Statement v1 of b with its SLSA Provenance
// v1 predicate, validated with the attestation library's validators, as
// compact JSON with sorted keys: equal Builds give equal bytes.
func Statement(b Build) ([]byte, error) {
	if len(b.Subjects) == 0 {
		return nil, fmt.Errorf("provenance: no subjects")
	}
	var subjects []*intoto.ResourceDescriptor
	for _, a := range b.Subjects {
		rd, err := descriptor(a.Name, "", a.Digest)
		if err != nil {
			return nil, fmt.Errorf("provenance: subject: %w", err)
		}
		subjects = append(subjects, rd)
	}
	slices.SortFunc(subjects, func(x, y *intoto.ResourceDescriptor) int { return strings.Compare(x.Name, y.Name) })
	for i := 1; i < len(subjects); i++ {
		if subjects[i].Name == subjects[i-1].Name {
			return nil, fmt.Errorf("provenance: subject %q twice", subjects[i].Name)
		}
	}
	ext, err := toStruct(b.ExternalParameters)
	if err != nil {
		return nil, fmt.Errorf("provenance: external parameters: %w", err)
	}
	def := &slsa.BuildDefinition{BuildType: BuildType, ExternalParameters: ext}
	if b.InternalParameters != nil {
		if def.InternalParameters, err = toStruct(b.InternalParameters); err != nil {
			return nil, fmt.Errorf("provenance: internal parameters: %w", err)
		}
	}
	for _, d := range b.ResolvedDependencies {
		rd, err := descriptor(d.Name, d.URI, d.Digest)
		if err != nil {
			return nil, fmt.Errorf("provenance: resolved dependency: %w", err)
		}
		def.ResolvedDependencies = append(def.ResolvedDependencies, rd)
	}
	builder := &slsa.Builder{Id: b.BuilderID}
	if b.Version != "" {
		builder.Version = map[string]string{"imsbuild": b.Version}
	}
	run := &slsa.RunDetails{Builder: builder}
	if b.InvocationID != "" || !b.StartedOn.IsZero() || !b.FinishedOn.IsZero() {
		run.Metadata = &slsa.BuildMetadata{InvocationId: b.InvocationID}
		if !b.StartedOn.IsZero() {
			run.Metadata.StartedOn = timestamppb.New(b.StartedOn)
		}
		if !b.FinishedOn.IsZero() {
			run.Metadata.FinishedOn = timestamppb.New(b.FinishedOn)
		}
	}
	pred := &slsa.Provenance{BuildDefinition: def, RunDetails: run}
	if err := pred.Validate(); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	predStruct, err := protoStruct(pred)
	if err != nil {
		return nil, err
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       subjects,
		PredicateType: PredicateType,
		Predicate:     predStruct,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	return canonical(st)
}

// descriptor makes a ResourceDescriptor of a name and a sha256 digest.
func descriptor(name, uri string, d digest.Digest) (*intoto.ResourceDescriptor, error) {
	if name == "" && uri == "" {
		return nil, fmt.Errorf("no name")
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s: digest %q: %w", name, d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("%s: digest %s: want sha256", name, d)
	}
	rd := &intoto.ResourceDescriptor{Name: name, Uri: uri, Digest: map[string]string{"sha256": d.Encoded()}}
	if err := rd.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rd, nil
}

// toStruct converts a value that encodes as a JSON object to a
// structpb.Struct (through JSON, so that typed structs work too).
func toStruct(v any) (*structpb.Struct, error) {
	raw, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return s, nil
}

// protoStruct converts a proto message to a structpb.Struct (the statement
// holds its predicate as one).
func protoStruct(m proto.Message) (*structpb.Struct, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("provenance: encode predicate: %w", err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("provenance: encode predicate: %w", err)
	}
	return s, nil
}

// canonical encodes a proto message as compact JSON with sorted keys.
// protojson's output is deliberately unstable (it varies whitespace between
// runs); re-encoding it with encoding/json (numbers kept as written) gives
// the same bytes for the same statement, so a rebuild signs the same payload.
func canonical(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("provenance: encode statement: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("provenance: encode statement: %w", err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("provenance: encode statement: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}
