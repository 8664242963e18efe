// Package spec decodes and validates imsbuild build files (*.ims.hcl) into an
// immutable Config: variables, locals, functions, references between blocks
// and every validation rule run before any work starts. Errors are
// hcl.Diagnostics with a source range, all reported at once.
//
// Load is the entry point:
//
//	cfg, diags := spec.Load(dir, spec.Options{Vars: vars, VarFiles: files, Environ: os.Environ()})
//
// A variable declared sensitive = true is marked, as in Terraform, and so is
// everything computed from it. Decoded values are plain strings again;
// Config.Sensitive lists the texts that were marked, for the engine to keep
// out of keys and logs, and diagnostics print them as "(sensitive value)".
package spec
