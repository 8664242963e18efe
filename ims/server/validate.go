package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims/server/store"
)

// Marshmallow's messages, which IMS returns in the errors map of a 422.
const (
	msgUnknown   = "Unknown field."
	msgMissing   = "Missing data for required field."
	msgNull      = "Field may not be null."
	msgString    = "Not a valid string."
	msgBool      = "Not a valid boolean."
	msgInteger   = "Not a valid integer."
	msgUUID      = "Not a valid UUID."
	msgList      = "Not a valid list."
	msgMapping   = "Not a valid mapping type."
	msgInputType = "Invalid input type."
	msgMinLen1   = "Shorter than minimum length 1."
	msgMin1      = "Must be greater than or equal to 1."
)

func msgOneOf(choices ...string) string {
	return "Must be one of: " + strings.Join(choices, ", ") + "."
}

// A checker validates one field's JSON value and returns its Go value, or
// the field's errors: a []string, or a map for nested fields.
type checker func(raw json.RawMessage) (any, any)

type field struct {
	name     string
	required bool
	nullable bool
	check    checker
}

// readBody reads a JSON object body the way IMS's Flask does: a wrong
// Content-Type is 415, unparsable JSON 400 (both with Flask's "message"),
// an empty body or empty object 400 "No input provided". It returns false
// when it has answered.
func readBody(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, json.RawMessage, bool) {
	ct := r.Header.Get("Content-Type")
	if mt, _, _ := strings.Cut(ct, ";"); !strings.EqualFold(strings.TrimSpace(mt), contentJSON) {
		if r.ContentLength == 0 {
			writeProblem(w, http.StatusBadRequest, detailNoInput)
			return nil, nil, false
		}
		writeFlaskMessage(w, http.StatusUnsupportedMediaType, messageNotJSON)
		return nil, nil, false
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(w, http.StatusRequestEntityTooLarge, detailTooLarge)
		} else {
			writeFlaskMessage(w, http.StatusBadRequest, messageBadJSON)
		}
		return nil, nil, false
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		writeProblem(w, http.StatusBadRequest, detailNoInput)
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil || dec.More() {
		writeFlaskMessage(w, http.StatusBadRequest, messageBadJSON)
		return nil, nil, false
	}
	// Python's falsy JSON values are "no input".
	switch string(v) {
	case "null", "{}", "[]", `""`, "0", "false":
		writeProblem(w, http.StatusBadRequest, detailNoInput)
		return nil, nil, false
	}
	obj, errs := asObject(v)
	if errs != nil {
		writeInvalid(w, errs.(map[string]any))
		return nil, nil, false
	}
	if len(obj) == 0 {
		writeProblem(w, http.StatusBadRequest, detailNoInput)
		return nil, nil, false
	}
	return obj, v, true
}

func asObject(raw json.RawMessage) (map[string]json.RawMessage, any) {
	var obj map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return nil, map[string]any{"_schema": []string{msgInputType}}
	}
	return obj, nil
}

// readValid reads a body with readBody and checks it against fields,
// answering a 422 with validate's errors. It returns the values, or false
// when it has answered.
func readValid(w http.ResponseWriter, r *http.Request, fields []field) (map[string]any, bool) {
	obj, _, ok := readBody(w, r)
	if !ok {
		return nil, false
	}
	vals, errs := validate(obj, fields)
	if errs != nil {
		writeInvalid(w, errs)
		return nil, false
	}
	return vals, true
}

// validate checks obj against fields and returns the values of the fields
// present, or the errors map of a 422 (unknown fields included).
func validate(obj map[string]json.RawMessage, fields []field) (map[string]any, map[string]any) {
	vals := map[string]any{}
	errs := map[string]any{}
	known := map[string]bool{}
	for _, f := range fields {
		known[f.name] = true
		raw, ok := obj[f.name]
		switch {
		case !ok:
			if f.required {
				errs[f.name] = []string{msgMissing}
			}
		case string(raw) == "null":
			if f.nullable {
				vals[f.name] = nil
			} else {
				errs[f.name] = []string{msgNull}
			}
		default:
			v, e := f.check(raw)
			if e != nil {
				errs[f.name] = e
			} else {
				vals[f.name] = v
			}
		}
	}
	for k := range obj {
		if !known[k] {
			errs[k] = []string{msgUnknown}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return vals, nil
}

func isString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func str(raw json.RawMessage) (any, any) {
	s, ok := isString(raw)
	if !ok {
		return nil, []string{msgString}
	}
	return s, nil
}

func nonEmpty(raw json.RawMessage) (any, any) {
	s, ok := isString(raw)
	if !ok {
		return nil, []string{msgString}
	}
	if s == "" {
		return nil, []string{msgMinLen1}
	}
	return s, nil
}

// notBlank is IMS's check of a name: "<field> field must not be blank".
func notBlank(name string) checker {
	return func(raw json.RawMessage) (any, any) {
		s, ok := isString(raw)
		if !ok {
			return nil, []string{msgString}
		}
		if strings.TrimSpace(s) == "" {
			return nil, []string{name + " field must not be blank"}
		}
		return s, nil
	}
}

func oneOf(choices ...string) checker {
	return func(raw json.RawMessage) (any, any) {
		s, ok := isString(raw)
		if !ok || !slices.Contains(choices, s) {
			return nil, []string{msgOneOf(choices...)}
		}
		return s, nil
	}
}

// Marshmallow's Boolean accepts these besides JSON true and false.
var (
	truthy = []string{"t", "T", "true", "True", "TRUE", "on", "On", "ON", "y", "Y", "yes", "Yes", "YES", "1"}
	falsy  = []string{"f", "F", "false", "False", "FALSE", "off", "Off", "OFF", "n", "N", "no", "No", "NO", "0"}
)

func boolean(raw json.RawMessage) (any, any) {
	switch string(raw) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	if s, ok := isString(raw); ok {
		if slices.Contains(truthy, s) {
			return true, nil
		}
		if slices.Contains(falsy, s) {
			return false, nil
		}
	}
	return nil, []string{msgBool}
}

func positiveInt(raw json.RawMessage) (any, any) {
	s := string(raw)
	if q, ok := isString(raw); ok {
		s = q
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return nil, []string{msgInteger}
	}
	if f < 1 {
		return nil, []string{msgMin1}
	}
	return int(f), nil
}

func uuidField(raw json.RawMessage) (any, any) {
	s, ok := isString(raw)
	if !ok {
		return nil, []string{msgUUID}
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return nil, []string{msgUUID}
	}
	return u.String(), nil
}

// object checks a nested object against fields.
func object(fields []field) checker {
	return func(raw json.RawMessage) (any, any) {
		obj, errs := asObject(raw)
		if errs != nil {
			return nil, errs
		}
		vals, verrs := validate(obj, fields)
		if verrs != nil {
			return nil, verrs
		}
		return vals, nil
	}
}

// list checks every item of a JSON array with item; errors are keyed by
// index, as marshmallow does.
func list(item checker) checker {
	return func(raw json.RawMessage) (any, any) {
		var items []json.RawMessage
		if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			return nil, []string{msgList}
		}
		vals := make([]any, 0, len(items))
		errs := map[string]any{}
		for i, it := range items {
			v, e := item(it)
			if e != nil {
				errs[strconv.Itoa(i)] = e
			}
			vals = append(vals, v)
		}
		if len(errs) > 0 {
			return nil, errs
		}
		return vals, nil
	}
}

var linkFields = []field{
	{name: "path", required: true, check: nonEmpty},
	{name: "etag", check: str},
	{name: "type", required: true, check: oneOf("s3")},
}

var linkField = object(linkFields)

func toLink(v any) *store.Link {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	l := &store.Link{Path: m["path"].(string), Type: m["type"].(string)}
	if e, ok := m["etag"].(string); ok {
		l.Etag = e
	}
	return l
}

var templateEntry = object([]field{
	{name: "key", required: true, check: str},
	{name: "value", required: true, check: str},
})

func toTemplate(v any) *[]store.TemplateEntry {
	items, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]store.TemplateEntry, 0, len(items))
	for _, it := range items {
		m := it.(map[string]any)
		out = append(out, store.TemplateEntry{Key: m["key"].(string), Value: m["value"].(string)})
	}
	return &out
}

// imageMetadata accepts what IMS's POST does: {"key":k,"value":v}, which
// craycli sends and which becomes {k: v}, or a map of strings.
func imageMetadata(raw json.RawMessage) (any, any) {
	obj, errs := asObject(raw)
	if errs != nil {
		return nil, []string{msgMapping}
	}
	out := map[string]string{}
	if k, ok := obj["key"]; ok && len(obj) <= 2 {
		ks, kok := isString(k)
		v, hasV := obj["value"]
		vs, vok := isString(v)
		if kok && (!hasV || vok) && (len(obj) == 1 || hasV) {
			out[ks] = vs
			return out, nil
		}
	}
	verrs := map[string]any{}
	for k, v := range obj {
		s, ok := isString(v)
		if !ok {
			verrs[k] = map[string]any{"value": []string{msgString}}
			continue
		}
		out[k] = s
	}
	if len(verrs) > 0 {
		return nil, verrs
	}
	return out, nil
}

var metadataPatch = object([]field{
	{name: "operation", required: true, check: oneOf("set", "remove")},
	{name: "key", required: true, check: str},
	{name: "value", check: str},
})

var sshContainer = object([]field{
	{name: "name", required: true, check: nonEmpty},
	{name: "jail", check: boolean},
})

var archField = oneOf("aarch64", "x86_64")
