package spec

// Options are the inputs of Load besides the build files.
type Options struct {
	// Vars are -var k=v flags in command-line order; later ones win.
	Vars []string
	// VarFiles are -var-file paths (HCL attribute files, e.g. site.imsvars.hcl).
	VarFiles []string
	// Environ is the process environment (os.Environ()): IMSBUILD_VAR_<name>
	// values and the env() function read it, nothing else does.
	Environ []string
}
