package spec

// Version is the version of the imsbuild build language that an
// imsbuild { required_version = "..." } constraint is checked against.
const Version = "0.1.0"
