// Package spec decodes and validates imsbuild build files (*.ims.hcl) into an
// immutable Config: variables, locals, functions, references between blocks
// and every validation rule run before any work starts. Errors are
// hcl.Diagnostics with a source range, all reported at once.
//
// Load is the entry point; LoadContext stops when its context is done:
//
//	cfg, diags := spec.LoadContext(ctx, dir, spec.Options{Vars: vars, VarFiles: files, Environ: os.Environ()})
//
// Build files are hostile input, so loading is bounded: a build or variable
// file must be a regular file of at most 16 MiB, file and templatefile read
// regular files of at most 64 MiB, and expressions, blocks, templates and
// JSON may nest at most 256 levels (checked on the tokens before parsing;
// the HCL parser is recursive). Locals are evaluated in dependency order,
// each with only the locals it refers to, in time linear in the build.
//
// A variable declared sensitive = true is marked, as in Terraform, and so is
// everything computed from it. Decoded values are plain strings again;
// Config.Sensitive lists the texts that were marked, for the engine to keep
// out of keys and logs, and diagnostics print them as "(sensitive value)".
package spec
