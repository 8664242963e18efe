package spec

import (
	"os"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Config is one decoded, validated build: every *.ims.hcl file of a directory.
// It is immutable once Load returns it; the engine builds its DAG from it.
type Config struct {
	Dir      string               // absolute build directory
	Settings Settings             // the imsbuild block
	Files    map[string]*hcl.File // parsed files by name, for diagnostics snippets
	// BuildFiles are the names in Files of the *.ims.hcl files of Dir (not
	// -var-file files), sorted.
	BuildFiles []string

	Repositories map[string]*Repository
	Recipes      map[string]*Recipe
	Images       map[string]*Image
	Publishes    []*Publish // in source order

	// Sensitive holds every text that came from a variable declared
	// sensitive = true, or was computed from one (a whole inline script
	// that interpolates it, an env value, a token), longest first. The
	// engine keeps these out of key preimages and logs; see NewRedactor.
	Sensitive []string

	// Variables are the input variables with their values, by name; a
	// provenance records them (the sensitive ones redacted).
	Variables map[string]Variable
}

// Variable is an input variable's final value. Value is unmarked: check
// Sensitive before showing it.
type Variable struct {
	Value     cty.Value
	Sensitive bool
}

// Settings is the imsbuild block.
type Settings struct {
	RequiredVersion string
	Cache           CacheSettings
	Signing         SigningSettings
	Executor        ExecutorSettings
}

// ExecutorSettings is the imsbuild.executor "kubernetes" block: where the
// steps that miss the cache are built. Kind is "" without the block. The
// values are checked here as far as the build language can; the CLI turns
// them into the executor's configuration.
type ExecutorSettings struct {
	Kind             string // "kubernetes"
	Kubeconfig       string // absolute path; "" is in-cluster, then ~/.kube/config
	Context          string
	Namespace        string
	Image            string
	ServiceAccount   string
	NodeSelector     map[string]string
	Tolerations      []Toleration
	Requests         map[string]string // resource name → quantity ("2", "500m", "4Gi")
	Limits           map[string]string
	Parallelism      int
	TTLAfterFinished time.Duration
	ImagePullPolicy  string // Always | IfNotPresent | Never; "" is the cluster's default
	BackoffLimit     *int
	HostNetwork      bool
	SSHServiceType   string // ClusterIP | NodePort | LoadBalancer; "" is ClusterIP
	DeclRange        hcl.Range
}

// Toleration is one element of the executor's tolerations, as in a pod spec.
type Toleration struct {
	Key, Operator, Value, Effect string
	Seconds                      *int64 // toleration_seconds
}

// SigningSettings is the imsbuild.signing block: the private key that signs
// every image's provenance. Key is "" without the block.
type SigningSettings struct {
	Key      string    // absolute path of a PEM private key
	KeyRange hcl.Range // where the build names it, for the key file's errors
}

// CacheSettings is the imsbuild.cache block. Paths are absolute.
type CacheSettings struct {
	Dir  string   // default "<Dir>/.imsbuild/cache"
	From []string // remote caches to read (s3://, oci://)
	To   string   // remote cache to write
	Salt string   // joins every key
	Env  []string // environment variable names allowed into steps and keys
}

// Repository is a package repository the recipes use.
type Repository struct {
	Name         string
	Type         string // apt | rpm-md
	URL          string
	Distribution string
	Components   []string
	WaitTimeout  time.Duration
	TrackRepos   bool
	DeclRange    hcl.Range
}

// Recipe is an IMS recipe: a kiwi-ng description.
type Recipe struct {
	Name              string
	Source            string // absolute path, or a URL (s3://, ims://)
	Type              string // kiwi-ng
	Arch              string // x86_64 | aarch64
	Profiles          []string
	LinuxDistribution string
	// RequireDKMS is the IMS record's require_dkms (default true, as IMS):
	// create jobs of the recipe take it unless they say otherwise.
	RequireDKMS  bool
	Template     map[string]string
	Repositories []string // names of repository blocks
	// BuilderImage runs kiwi-ng in this OCI image (registry reference or OCI
	// layout) with runc, as IMS pins its builder container; "" = host kiwi-ng.
	BuilderImage string
	DeclRange    hcl.Range
}

// Image is an image block. Exactly one of Recipe, From and Import is set.
type Image struct {
	Label            string   // the block label: image.<Label>
	Name             string   // the IMS image name; defaults to Label
	Arch             string   // x86_64 (default) | aarch64
	Recipe           string   // recipe block name (job_type create)
	From             string   // parent image label (job_type customize)
	Import           string   // absolute path of a dir, .tar[.gz|.zst] or squashfs file; or a URL
	KernelFileName   string   // default "vmlinuz"
	InitrdFileName   string   // default "initrd"
	KernelParameters string   // the boot_parameters artifact when set; a from child without its own gets its parent's
	CACertificates   []string // PEM texts
	Squashfs         Squashfs
	DebugOnFailure   bool
	// SkipNormalize is normalize = false: the root is packed as the build
	// left it, without builders/normalize (the zero value normalizes).
	SkipNormalize    bool
	Customize        []Customize // in order
	Interactive      *Interactive
	CacheInteractive bool
	DeclRange        hcl.Range
}

// Squashfs holds the mksquashfs options of an image.
type Squashfs struct {
	Compression string   // zstd (default) | xz | gzip | lz4 | lzo
	Level       int      // 0 means the compressor's default (zstd: 3)
	BlockSize   int64    // bytes, default 1 MiB
	Exclude     []string // extra -e patterns, relative to the root
}

// Customize is one customize block: a script or inline text, files, run in a sandbox.
type Customize struct {
	Script  string            // absolute path of a script file, or ""
	Inline  string            // script text, or ""
	Files   []FileCopy        // sorted by Dest
	Env     map[string]string // extra environment for the script
	Jail    bool              // default true: the image root is /
	Network bool              // default false
	Timeout time.Duration     // 0: none
	// BuilderImage runs a non-jailed script in this OCI image (a registry
	// reference or an OCI layout) with an OCI runtime, the image at /mnt/image.
	BuilderImage string
	DeclRange    hcl.Range
}

// FileCopy copies a host file into the image before the script runs. It
// comes from an entry of files = { "/dest" = "src" } or from a file block.
type FileCopy struct {
	Dest   string // absolute path inside the image
	Source string // absolute host path
	// Mode is the mode to set: permission bits plus os.ModeSetuid,
	// os.ModeSetgid and os.ModeSticky. Only meaningful when HasMode is set;
	// otherwise the source's mode is kept.
	Mode    os.FileMode
	HasMode bool
	// Owner is "user", "user:group", "uid" or "uid:gid" (see ParseOwner);
	// names are looked up in the image's /etc/passwd and /etc/group. ""
	// keeps the owner: root for a new file, the old owner for a replaced one.
	Owner string
}

// Interactive opens the SSH environment after the customize blocks.
type Interactive struct {
	PublicKeys []string
	Listen     string
	Timeout    time.Duration
	Jail       bool // default true: sessions chroot into the image, done with /tmp/complete
	Network    bool // default false
}

// Publish is a publish "<kind>" "<name>" block.
type Publish struct {
	Kind       string // dir | s3 | oci | ims
	Name       string
	Images     []string // image labels
	Recipes    []string // recipe names
	Path       string   // dir: absolute output path
	Endpoint   string   // s3, ims
	Region     string   // s3
	Bucket     string   // s3, default boot-images
	Prefix     string   // s3 key prefix
	PathStyle  bool     // s3
	CABundle   string   // s3, ims: absolute path of a PEM bundle
	Repository string   // oci; evaluated with the first image of Images
	// ImageRepos is the oci repository per image label: repository is
	// evaluated once per image, so "registry/${image.name}" differs by image.
	ImageRepos map[string]string
	Tags       []string // oci
	Insecure   bool     // oci: plain HTTP
	Token      string   // ims bearer token
	DeclRange  hcl.Range
}

// ID returns "publish.<kind>.<name>".
func (p *Publish) ID() string { return "publish." + p.Kind + "." + p.Name }
