package spec

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// functions returns the functions build files may call. The I/O functions
// read files relative to the build directory; env reads Options.Environ only.
func functions(ctx context.Context, r resolver, env map[string]string) map[string]function.Function {
	fs := map[string]function.Function{
		"abs":           stdlib.AbsoluteFunc,
		"base64decode":  base64DecodeFunc,
		"base64encode":  base64EncodeFunc,
		"chomp":         stdlib.ChompFunc,
		"coalesce":      stdlib.CoalesceFunc,
		"compact":       stdlib.CompactFunc,
		"concat":        stdlib.ConcatFunc,
		"contains":      stdlib.ContainsFunc,
		"distinct":      stdlib.DistinctFunc,
		"element":       stdlib.ElementFunc,
		"flatten":       stdlib.FlattenFunc,
		"format":        stdlib.FormatFunc,
		"formatlist":    stdlib.FormatListFunc,
		"indent":        stdlib.IndentFunc,
		"join":          stdlib.JoinFunc,
		"jsondecode":    jsonDecodeFunc,
		"jsonencode":    stdlib.JSONEncodeFunc,
		"keys":          stdlib.KeysFunc,
		"length":        stdlib.LengthFunc,
		"lookup":        stdlib.LookupFunc,
		"lower":         stdlib.LowerFunc,
		"max":           stdlib.MaxFunc,
		"md5":           hashStringFunc(md5.New),
		"merge":         stdlib.MergeFunc,
		"min":           stdlib.MinFunc,
		"regex":         stdlib.RegexFunc,
		"regex_replace": stdlib.RegexReplaceFunc,
		"replace":       stdlib.ReplaceFunc,
		"reverse":       stdlib.ReverseListFunc,
		"sha256":        hashStringFunc(sha256.New),
		"sort":          stdlib.SortFunc,
		"split":         stdlib.SplitFunc,
		"substr":        stdlib.SubstrFunc,
		"tobool":        stdlib.MakeToFunc(cty.Bool),
		"tolist":        stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":         stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":      stdlib.MakeToFunc(cty.Number),
		"toset":         stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring":      stdlib.MakeToFunc(cty.String),
		"trim":          stdlib.TrimFunc,
		"trimprefix":    stdlib.TrimPrefixFunc,
		"trimspace":     stdlib.TrimSpaceFunc,
		"trimsuffix":    stdlib.TrimSuffixFunc,
		"upper":         stdlib.UpperFunc,
		"values":        stdlib.ValuesFunc,

		"abspath":    abspathFunc(r),
		"env":        envFunc(env),
		"file":       fileFunc(ctx, r),
		"fileexists": fileExistsFunc(r),
		"filesha256": fileHashFunc(ctx, r, sha256.New),
		"filemd5":    fileHashFunc(ctx, r, md5.New),
	}
	// templatefile gets every function but itself, as in Terraform, so a
	// template cannot recurse.
	inner := make(map[string]function.Function, len(fs))
	for k, v := range fs {
		inner[k] = v
	}
	fs["templatefile"] = templateFileFunc(ctx, r, inner)
	return fs
}

func stringFunc(params []function.Parameter, impl func(args []cty.Value) (string, error)) function.Function {
	return function.New(&function.Spec{
		Params: params,
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			s, err := impl(args)
			if err != nil {
				return cty.UnknownVal(cty.String), err
			}
			return cty.StringVal(s), nil
		},
	})
}

var pathParam = []function.Parameter{{Name: "path", Type: cty.String}}

var base64EncodeFunc = stringFunc([]function.Parameter{{Name: "str", Type: cty.String}}, func(args []cty.Value) (string, error) {
	return base64.StdEncoding.EncodeToString([]byte(args[0].AsString())), nil
})

var base64DecodeFunc = stringFunc([]function.Parameter{{Name: "str", Type: cty.String}}, func(args []cty.Value) (string, error) {
	b, err := base64.StdEncoding.DecodeString(args[0].AsString())
	if err != nil {
		return "", fmt.Errorf("invalid base64: %w", err)
	}
	if !utf8.Valid(b) {
		return "", errors.New("the decoded bytes are not valid UTF-8")
	}
	return string(b), nil
})

func hashStringFunc(h func() hash.Hash) function.Function {
	return stringFunc([]function.Parameter{{Name: "str", Type: cty.String}}, func(args []cty.Value) (string, error) {
		w := h()
		io.WriteString(w, args[0].AsString())
		return hex.EncodeToString(w.Sum(nil)), nil
	})
}

func abspathFunc(r resolver) function.Function {
	return stringFunc(pathParam, func(args []cty.Value) (string, error) {
		return r.abs(args[0].AsString()), nil
	})
}

func envFunc(env map[string]string) function.Function {
	return stringFunc([]function.Parameter{{Name: "name", Type: cty.String}}, func(args []cty.Value) (string, error) {
		return env[args[0].AsString()], nil
	})
}

// readText reads a UTF-8 regular file of at most maxReadFileSize bytes.
func readText(ctx context.Context, r resolver, p string) (string, error) {
	b, err := readRegular(ctx, r.abs(p), maxReadFileSize)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%s is not valid UTF-8; use filesha256 for binary files", p)
	}
	return string(b), nil
}

func fileFunc(ctx context.Context, r resolver) function.Function {
	return stringFunc(pathParam, func(args []cty.Value) (string, error) {
		return readText(ctx, r, args[0].AsString())
	})
}

// fileHashFunc hashes a regular file of any size: it streams, and stops
// when ctx is done.
func fileHashFunc(ctx context.Context, r resolver, h func() hash.Hash) function.Function {
	return stringFunc(pathParam, func(args []cty.Value) (string, error) {
		f, err := openRegular(r.abs(args[0].AsString()))
		if err != nil {
			return "", err
		}
		defer f.Close()
		w := h()
		if _, err := io.Copy(w, ctxio.Reader(ctx, f)); err != nil {
			return "", fmt.Errorf("read %s: %w", f.Name(), err)
		}
		return hex.EncodeToString(w.Sum(nil)), nil
	})
}

func fileExistsFunc(r resolver) function.Function {
	return function.New(&function.Spec{
		Params: pathParam,
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			fi, err := os.Stat(r.abs(args[0].AsString()))
			switch {
			case errors.Is(err, os.ErrNotExist):
				return cty.False, nil
			case err != nil:
				return cty.UnknownVal(cty.Bool), err
			case !fi.Mode().IsRegular(): // what file() refuses does not exist for it
				return cty.False, nil
			}
			return cty.True, nil
		},
	})
}

func templateFileFunc(ctx context.Context, r resolver, fs map[string]function.Function) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{
			{Name: "path", Type: cty.String},
			{Name: "vars", Type: cty.DynamicPseudoType},
		},
		Type: function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			vars := args[1]
			if vars.IsNull() || !vars.IsWhollyKnown() || !(vars.Type().IsObjectType() || vars.Type().IsMapType()) {
				return cty.UnknownVal(cty.String), errors.New("vars must be an object or a map")
			}
			src, err := readText(ctx, r, p)
			if err != nil {
				return cty.UnknownVal(cty.String), err
			}
			tokens, _ := hclsyntax.LexTemplate([]byte(src), p, hcl.InitialPos)
			if d := checkNesting(tokens); d != nil {
				return cty.UnknownVal(cty.String), hcl.Diagnostics{d}
			}
			expr, diags := hclsyntax.ParseTemplate([]byte(src), p, hcl.InitialPos)
			if diags.HasErrors() {
				return cty.UnknownVal(cty.String), diags
			}
			ctx := &hcl.EvalContext{Variables: vars.AsValueMap(), Functions: fs}
			v, diags := expr.Value(ctx)
			if diags.HasErrors() {
				return cty.UnknownVal(cty.String), diags
			}
			if v.IsNull() || !v.IsWhollyKnown() || !v.Type().Equals(cty.String) {
				return cty.UnknownVal(cty.String), errors.New("the template did not produce a string")
			}
			return v, nil
		},
	})
}
