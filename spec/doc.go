// Package spec decodes and validates imsbuild build files (*.ims.hcl) into an
// immutable Config: variables, locals, functions, references between blocks
// and every validation rule run before any work starts. Errors are
// hcl.Diagnostics with a source range, all reported at once.
//
// Load is the entry point:
//
//	cfg, diags := spec.Load(dir, spec.Options{Vars: vars, VarFiles: files, Environ: os.Environ()})
package spec
